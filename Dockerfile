# voicegate: one image for every role (extproc, edge, simulator, aggregator, otel-export, …);
# the role is the first argument, e.g. `docker run voicegate:local extproc --config /config/voicegate.yaml`.
FROM node:20-slim

WORKDIR /app

# Dependencies first, so source edits reuse this layer. Sources run through tsx (a runtime
# dependency): there is no build step.
COPY package.json package-lock.json ./
RUN npm ci && npm cache clean --force

# Only what runs; the host's node_modules never enters the image.
COPY tsconfig.json ./
COPY bin ./bin
COPY extproc ./extproc
# The simulator and the development wiring that adds `voicegate simulator` (the compose stack's
# upstream); an image for production alone can drop these two lines and the gateway still runs.
COPY simulator ./simulator
COPY dev ./dev
COPY protos ./protos
COPY envoy ./envoy
COPY examples ./examples

ENV NODE_ENV=production
USER node
# 8080 edge, 50051 extproc gRPC, 8081 control plane, 7070 simulator.
EXPOSE 8080 50051 8081 7070
ENTRYPOINT ["node", "bin/voicegate.js"]
