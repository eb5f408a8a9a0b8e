# syntax=docker/dockerfile:1
# Build: compile TypeScript with all dependencies, then keep only production ones.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json tsconfig.processor.json ./
COPY src ./src
COPY processor ./processor
RUN npm run build && npm prune --omit=dev

# Run: compiled code and production dependencies, as the unprivileged "node" user.
FROM node:24-bookworm-slim
# In production the API needs SECRETS_KEY (openssl rand -base64 32), and serves
# /metrics only with METRICS_TOKEN.
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000
WORKDIR /app
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist ./dist
COPY --chown=node:node package.json openapi.yaml ./
# DATA_DIR, the node user's: outside production the key that seals secrets at rest
# is generated there (docker-compose.yml keeps it in a volume).
RUN mkdir -p /app/.data && chown node:node /app/.data
USER node
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM goes straight to node (no npm in between), which finishes in-flight requests.
# The same image runs the stand-in card processor: CMD ["node", "dist/processor/main.js"].
CMD ["node", "--max-old-space-size=192", "dist/main.js"]
