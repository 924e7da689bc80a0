/* CRC-32C, shared by kalua.codec and the segment format. */
#ifndef KALUA_CRC32C_H
#define KALUA_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C of data, continuing from crc (0 to start). */
uint32_t codec_crc32c(uint32_t crc, const void *data, size_t len);

#endif
