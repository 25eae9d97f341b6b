"""Running the service: private servers from wheels, and the launcher behind the Makefile."""
