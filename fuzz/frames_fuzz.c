/* libFuzzer target: the auth relay's view of a Kafka byte stream. The
 * input is cut into chunks (sizes from its first bytes) and fed to the
 * frame reader, whose callback parses each frame head as a request
 * header and as a Produce header; frames_to_boundary must never point
 * past the frame being read. Any input must end cleanly: no crash, no
 * read past the buffers. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "kafka/frames.h"

static void on_frame(void *ud, const unsigned char *head, size_t len) {
  int16_t api, version;
  int32_t correlation;
  size_t *frames = ud;
  (*frames)++;
  if (len > FRAME_HEAD_MAX) abort();
  frames_request_api(head, len, &api, &version, &correlation);
  frames_produce_without_response(head, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  frame_reader f = {{0}, 0, 0, 0};
  size_t frames = 0, chunk;
  if (size < 1) return 0;
  chunk = (size_t)data[0] % 17 + 1; /* 1..17 bytes at a time: every split point */
  data++, size--;
  while (size > 0) {
    size_t n = chunk < size ? chunk : size, room = frames_to_boundary(&f);
    if (room > 0 && f.head_want == 0 && room > 4) abort(); /* reading a size: at most 4 */
    frames_feed(&f, data, n, on_frame, &frames);
    data += n, size -= n;
  }
  return 0;
}
