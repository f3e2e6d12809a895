# syntax=docker/dockerfile:1
# Switchyard container image. Build: docker build -t switchyard .
# Run:   docker run -p 8080:8080 -v "$PWD/config.yaml:/etc/switchyard/config.yaml:ro" \
#          -e OPENAI_KEY_1 -e SWITCHYARD_ADMIN_KEY switchyard
# The config must listen on 0.0.0.0 (not 127.0.0.1) to be reachable from outside the container.
# docs/OPERATIONS.md has the details. .ci/lint-dockerfile.sh checks this file in CI.

# ---- build: dev dependencies and the TypeScript compiler; nothing of this stage ships but dist/src
FROM node:20.20.2-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies only, non-root
FROM node:20.20.2-bookworm-slim AS runtime
ENV NODE_ENV=production \
    SWITCHYARD_CONFIG=/etc/switchyard/config.yaml \
    SWITCHYARD_HEALTH_URL=http://127.0.0.1:8080/healthz
WORKDIR /app
COPY package.json package-lock.json ./
# No install scripts are needed by the production dependencies; skipping them shrinks the attack surface.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist/src ./dist/src
USER node
EXPOSE 8080
# Slim images have no curl: node itself probes /healthz. Set SWITCHYARD_HEALTH_URL when the config
# listens on another port or serves https (the probe accepts the relay's own certificate).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "const u=new URL(process.env.SWITCHYARD_HEALTH_URL);const m=require(u.protocol==='https:'?'https':'http');const r=m.get(u,{rejectUnauthorized:false,timeout:3000},(s)=>process.exit(s.statusCode===200?0:1));r.on('timeout',()=>process.exit(1));r.on('error',()=>process.exit(1));"]
# SIGTERM drains (in-flight turns finish up to shutdownGraceMs): give `docker stop -t` more than that.
STOPSIGNAL SIGTERM
# Arguments after the image name go to switchyard itself (e.g. --config /other/path.yaml).
ENTRYPOINT ["node", "dist/src/main.js"]
