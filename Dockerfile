# One image for every role: the command picks it (api, worker, scheduler, flower, db upgrade, ...).
#   docker build -t automations .
#   docker run --rm automations --help
# Pinned to a patch release: two builds of the same commit get the same interpreter.
FROM python:3.11.11-slim-bookworm

# AUTOMATIONS_API_WORKERS: the default command (`api`) serves with several uvicorn processes,
# as production should; set it to the cores the container may use.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AUTOMATIONS_API_WORKERS=2

RUN groupadd --system --gid 10001 automations \
    && useradd --system --uid 10001 --gid automations --create-home --home-dir /home/automations \
        --shell /usr/sbin/nologin automations

WORKDIR /build

# Dependencies first, read from pyproject.toml, so that a code change does not reinstall them.
# constraints.txt pins every one of them, direct and transitive, and pip itself (`make lock`).
COPY pyproject.toml constraints.txt ./
RUN pip install --no-cache-dir -c constraints.txt pip
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > requirements.txt \
    && pip install --no-cache-dir -c constraints.txt -r requirements.txt

# Then the project itself, which installs the `automations` console script.
COPY README.md ./
COPY api ./api
COPY cli ./cli
COPY engine ./engine
COPY migrations ./migrations
COPY models ./models
COPY tasks ./tasks
COPY web ./web
COPY wiring ./wiring
RUN pip install --no-cache-dir --no-deps --build-constraint constraints.txt . \
    && pip check \
    && rm -rf /build

# The working directory holds nothing but relative data paths (unused when the database and the
# email transport are configured, as docker-compose.yml does); it belongs to the runtime user.
WORKDIR /app
RUN chown automations:automations /app

USER automations

EXPOSE 8000 5555

ENTRYPOINT ["automations"]
CMD ["api"]
