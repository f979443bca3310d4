# dnsfw's container image, made from the offline bundle of `make dist` (`make image` does both):
#   make image            # or: make dist && docker build --build-arg VERSION=0.1.0 -t dnsfw .
#   docker run -d --read-only --tmpfs /tmp -v dnsfw-state:/var/lib/dnsfw \
#       -p 53:1053/udp -p 53:1053/tcp dnsfw:0.1.0
# Non-root (user dnsfw, uid 10053); dnsfw writes only to the volume /var/lib/dnsfw (lists
# edited through the admin API, downloaded url lists) and to stdout/stderr, so the root file
# system can be read-only. The Corefile (packaging/container/Corefile) is /etc/dnsfw/Corefile:
# mount your own over it. The health check asks /health on 8080.
FROM python:3.11-slim-bookworm

ARG VERSION
# set by BuildKit and buildah to the image's architecture: amd64 or arm64
ARG TARGETARCH=amd64

SHELL ["/bin/sh", "-eu", "-c"]
COPY dist/dnsfw-${VERSION}-linux-*.tar.gz /tmp/bundles/
COPY packaging/container/Corefile /etc/dnsfw/Corefile
# install.sh as on a host: it creates no user without systemd-sysusers, so useradd first; it
# keeps the image's Corefile and checks it with dnsfw check
RUN case "$TARGETARCH" in amd64) arch=x86_64 ;; arm64) arch=aarch64 ;; \
        *) echo "no dnsfw bundle for $TARGETARCH" >&2; exit 1 ;; esac; \
    useradd --system --uid 10053 --user-group --home-dir /var/lib/dnsfw \
        --shell /usr/sbin/nologin dnsfw; \
    tar -C /tmp -xzf "/tmp/bundles/dnsfw-${VERSION}-linux-$arch.tar.gz"; \
    install -d -o dnsfw -g dnsfw -m 0750 /var/lib/dnsfw/lists; \
    install -o dnsfw -g dnsfw -m 0640 /dev/null /var/lib/dnsfw/lists/local.txt; \
    SYSTEMCTL='' "/tmp/dnsfw-${VERSION}-linux-$arch/install.sh"; \
    rm -rf /tmp/bundles /tmp/dnsfw-*

ENV PYTHONDONTWRITEBYTECODE=1 \
    STATE_DIRECTORY=/var/lib/dnsfw
# numeric, so that a runtime checking runAsNonRoot (Kubernetes) can see it is not root
USER 10053:10053
WORKDIR /var/lib/dnsfw
VOLUME ["/var/lib/dnsfw"]
EXPOSE 1053/udp 1053/tcp 8080/tcp
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/opt/dnsfw/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]
ENTRYPOINT ["/opt/dnsfw/bin/dnsfw"]
CMD ["run", "-conf", "/etc/dnsfw/Corefile"]
