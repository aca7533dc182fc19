# The agentstream worker image used by docker-compose.kafka.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams streams
COPY agents agents
COPY sinks sinks
COPY schemas schemas
RUN pip install --no-cache-dir . && useradd --create-home agentstream
USER agentstream
ENV LITELLM_LOCAL_MODEL_COST_MAP=True
CMD ["agentstream", "worker"]
