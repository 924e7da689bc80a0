/* kalua.codec: checksums and compression shared by the segment format. */
#ifndef KALUA_CODEC_H
#define KALUA_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C of data, continuing from crc (0 to start). */
uint32_t codec_crc32c(uint32_t crc, const void *data, size_t len);

#endif
