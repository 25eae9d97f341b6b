FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY tasks ./tasks
COPY webapp ./webapp
COPY stack ./stack
RUN useradd --create-home --uid 1000 app
USER app
EXPOSE 5000
CMD ["gunicorn", "webapp:create_app()", "--bind", "0.0.0.0:5000", "--worker-class", "gthread", "--workers", "2", "--threads", "8"]
