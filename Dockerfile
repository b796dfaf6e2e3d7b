# Gatehouse container: config and state are volumes; runs as an unprivileged user.
FROM node:20-bookworm-slim
ENV NODE_ENV=production GATEHOUSE_CONFIG=/etc/gatehouse/profiles/container.yaml
WORKDIR /opt/gatehouse
COPY package.json package-lock.json tsconfig.json ./
COPY scripts ./scripts
COPY src ./src
# `npm ci` builds the plain JavaScript (the `prepare` script: esbuild bundles src/ into dist/), then the build tools are dropped:
# the image runs `node dist/cli/main.js` in one process (PID 1 gets the signals itself).
RUN npm ci --no-audit --no-fund && npm prune --omit=dev && npm cache clean --force && rm -rf src scripts
COPY config /etc/gatehouse
RUN groupadd --system gatehouse && useradd --system --gid gatehouse --home-dir /var/lib/gatehouse --shell /usr/sbin/nologin gatehouse \
 && mkdir -p /var/lib/gatehouse && chown gatehouse:gatehouse /var/lib/gatehouse && chmod 0700 /var/lib/gatehouse
USER gatehouse
VOLUME ["/etc/gatehouse", "/var/lib/gatehouse"]
EXPOSE 2525 2465 2121 1119 1563 30000-30099
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["start"]
