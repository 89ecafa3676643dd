# Slim, non-root image of the bot; the same image runs every role (BOT_ROLE=gateway|worker|all).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN useradd --create-home --uid 10001 bot
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
COPY storage ./storage
RUN pip install . && mkdir -p /data && chown bot:bot /data
USER bot
ENV DATABASE_PATH=/data/bot.sqlite3 VIDEO_DIR=/data/videos
VOLUME ["/data"]
CMD ["python", "-m", "bot"]
