/* Kafka frames as a byte stream: where each frame ends, and what its first
 * bytes say. Pure C over buffers, shared by the auth relay (and fuzzed:
 * fuzz/frames_fuzz.c), so that bytes from a broker or a client never reach
 * a parser that trusts them. */
#ifndef KALUA_KAFKA_FRAMES_H
#define KALUA_KAFKA_FRAMES_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HEAD_MAX 128

/* One direction of a connection: the 4-byte size, then the first
 * FRAME_HEAD_MAX bytes of each frame (request or response header). */
typedef struct {
  unsigned char head[FRAME_HEAD_MAX];
  size_t head_len, head_want;
  uint32_t left; /* bytes of the current frame's body still to come */
} frame_reader;

/* Called with the head of each complete frame. */
typedef void (*frame_fn)(void *ud, const unsigned char *head, size_t len);

/* Follows frame boundaries over n more bytes; calls fn at each frame end. */
void frames_feed(frame_reader *f, const unsigned char *p, size_t n, frame_fn fn, void *ud);

/* Bytes to the end of the frame being read: 0 at a boundary. While the
 * size itself is being read, the rest of the size. */
size_t frames_to_boundary(const frame_reader *f);

/* A bounded reader over a buffer: reads past the end set bad and give 0. */
typedef struct {
  const unsigned char *p;
  size_t n;
  int bad;
} kreader;

const unsigned char *kr_take(kreader *rd, size_t n);
int16_t kr_int16(kreader *rd);
int32_t kr_int32(kreader *rd);
int64_t kr_int64(kreader *rd);
/* A string or bytes of n (length already read); NULL when n < 0. */
const unsigned char *kr_bytes(kreader *rd, int32_t n);
/* An unsigned varint (flexible versions); 0 when truncated or too long. */
int kr_uvarint(kreader *rd, uint32_t *v);

uint32_t frames_get32(const unsigned char *p);
void frames_put16(unsigned char *p, uint16_t v);
void frames_put32(unsigned char *p, uint32_t v);

/* Request header fields: api key, version, correlation id (0 if short). */
int frames_request_api(const unsigned char *h, size_t n, int16_t *api_key, int16_t *version, int32_t *correlation);
/* Produce with acks=0 gets no response: it must not be waited for. An
 * unreadable header counts as acks != 0. */
int frames_produce_without_response(const unsigned char *h, size_t n);

#endif
