/* Carries a SASL exchange to a real Kafka broker for specs, in the same
 * line shape as gss_acceptor.c, so a mechanism running in kalua can be
 * tested against the broker without the auth relay:
 *
 *   kafka_sasl_peer HOST PORT MECHANISM
 *
 *   stdin   T <hex>                 a client message: one SaslAuthenticate v1 request
 *   stdout  T <hex> <lifetime-ms>   the broker's answer (auth bytes, session lifetime)
 *           E <message>             SaslHandshake or SaslAuthenticate failed; exits 1
 *
 * After connecting it sends SaslHandshake v1 for MECHANISM (KIP-43); after
 * the exchange, an ApiVersions v0 request proves the connection is usable
 * ("V <count of API keys>"). Plain POSIX sockets; no kalua, no librdkafka. */
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int fd;
static int32_t correlation;

static void refuse(const char *fmt, const char *a) {
  printf("E ");
  printf(fmt, a);
  printf("\n");
  exit(1);
}

static void put16(unsigned char *p, int v) { p[0] = (unsigned char)(v >> 8); p[1] = (unsigned char)v; }
static void put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16); p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}
static uint32_t get32(const unsigned char *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static int get16(const unsigned char *p) { return (int16_t)(p[0] << 8 | p[1]); }

static void write_all(const unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) refuse("%s", "the broker closed the connection");
    p += w;
    n -= (size_t)w;
  }
}

static void read_all(unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r <= 0) refuse("%s", "the broker closed the connection");
    p += r;
    n -= (size_t)r;
  }
}

/* Sends a request (header v1, client id "spec") with body; returns the
 * response body after the correlation id (malloc'd), its length in *len. */
static unsigned char *request(int api_key, int version, const unsigned char *body, size_t body_len, size_t *len) {
  size_t n = 4 + 2 + 2 + 4 + 2 + 4 + body_len;
  unsigned char *buf = malloc(n), size[4];
  put32(buf, (uint32_t)(n - 4));
  put16(buf + 4, api_key);
  put16(buf + 6, version);
  put32(buf + 8, (uint32_t)++correlation);
  put16(buf + 12, 4);
  memcpy(buf + 14, "spec", 4);
  memcpy(buf + 18, body, body_len);
  write_all(buf, n);
  free(buf);
  read_all(size, 4);
  n = get32(size);
  if (n < 4 || n > 1 << 24) refuse("%s", "a bad response size");
  buf = malloc(n);
  read_all(buf, n);
  if ((int32_t)get32(buf) != correlation) refuse("%s", "a response with the wrong correlation id");
  memmove(buf, buf + 4, n - 4);
  *len = n - 4;
  return buf;
}

int main(int argc, char **argv) {
  struct addrinfo hints = {0}, *ai;
  unsigned char body[65536 + 4], *resp;
  static char line[140000];
  size_t len, n, i;
  int err;
  if (argc != 4) {
    fprintf(stderr, "usage: kafka_sasl_peer HOST PORT MECHANISM\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(argv[1], argv[2], &hints, &ai) != 0) refuse("cannot resolve %s", argv[1]);
  fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
  if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) refuse("cannot connect to %s", argv[1]);
  freeaddrinfo(ai);

  /* SaslHandshake v1 (api key 17): mechanism -> error_code, [mechanisms] */
  n = strlen(argv[3]);
  put16(body, (int)n);
  memcpy(body + 2, argv[3], n);
  resp = request(17, 1, body, n + 2, &len);
  if (len < 6) refuse("%s", "a short SaslHandshake response");
  if ((err = get16(resp)) != 0) {
    char names[1024] = "";
    uint32_t count = get32(resp + 2), k;
    size_t off = 6;
    for (k = 0; k < count && off + 2 <= len; k++) {
      int l = get16(resp + off);
      snprintf(names + strlen(names), sizeof names - strlen(names), "%s%.*s", k ? "," : "", l, (char *)resp + off + 2);
      off += 2 + (size_t)l;
    }
    refuse("SaslHandshake: the broker enables %s", names);
  }
  free(resp);

  while (fgets(line, sizeof line, stdin)) {
    const char *hex;
    n = strcspn(line, "\r\n");
    line[n] = '\0';
    if (line[0] != 'T') refuse("%s", "expected a T line");
    hex = line[1] == ' ' ? line + 2 : line + 1;
    n = strlen(hex) / 2;
    if (n > 65536) refuse("%s", "a client message over 64 KiB");
    /* SaslAuthenticate v1 (api key 36): bytes auth_bytes */
    put32(body, (uint32_t)n);
    for (i = 0; i < n; i++) {
      unsigned int v;
      sscanf(hex + 2 * i, "%2x", &v);
      body[4 + i] = (unsigned char)v;
    }
    resp = request(36, 1, body, n + 4, &len);
    /* error_code int16, error_message nullable string, auth_bytes bytes, session_lifetime_ms int64 */
    if (len < 4) refuse("%s", "a short SaslAuthenticate response");
    err = get16(resp);
    {
      int mlen = get16(resp + 2);
      size_t off = 4 + (size_t)(mlen > 0 ? mlen : 0);
      uint32_t blen;
      long long lifetime;
      if (err != 0) {
        printf("E SaslAuthenticate error %d: %.*s\n", err, mlen > 0 ? mlen : 0, (char *)resp + 4);
        return 1;
      }
      blen = get32(resp + off);
      lifetime = (long long)((uint64_t)get32(resp + off + 4 + blen) << 32 | get32(resp + off + 8 + blen));
      printf("T ");
      for (i = 0; i < blen; i++) printf("%02x", resp[off + 4 + i]);
      printf(" %lld\n", lifetime);
    }
    free(resp);
  }
  /* The client said it is done (stdin closed): the connection must work. */
  resp = request(18, 0, body, 0, &len);
  if (len < 6 || get16(resp) != 0) refuse("%s", "ApiVersions failed after authentication");
  printf("V %u\n", get32(resp + 2));
  free(resp);
  close(fd);
  return 0;
}
