/* CRC-32C (fedkd_crc32c): the published check values, the SSE 4.2 path
 * against the table-driven one on every length and alignment up to 200
 * bytes, and a CRC continued over pieces equal to the whole's. */
#include <stdint.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "test_util.h"

int main(void)
{
    /* The check value of the CRC catalogue and RFC 3720's examples. */
    unsigned char bytes[32];
    CHECK(fedkd_crc32c("123456789", 9) == 0xe3069283u, "\"123456789\": %08x",
          (unsigned)fedkd_crc32c("123456789", 9));
    memset(bytes, 0, sizeof bytes);
    CHECK(fedkd_crc32c(bytes, 32) == 0x8a9136aau, "32 zeros: %08x",
          (unsigned)fedkd_crc32c(bytes, 32));
    memset(bytes, 0xff, sizeof bytes);
    CHECK(fedkd_crc32c(bytes, 32) == 0x62a8ab43u, "32 x 0xff: %08x",
          (unsigned)fedkd_crc32c(bytes, 32));
    for (int i = 0; i < 32; i++) bytes[i] = (unsigned char)i;
    CHECK(fedkd_crc32c(bytes, 32) == 0x46dd794eu, "0 .. 31: %08x",
          (unsigned)fedkd_crc32c(bytes, 32));
    for (int i = 0; i < 32; i++) bytes[i] = (unsigned char)(31 - i);
    CHECK(fedkd_crc32c(bytes, 32) == 0x113fdb5cu, "31 .. 0: %08x",
          (unsigned)fedkd_crc32c(bytes, 32));
    CHECK(fedkd_crc32c(bytes, 0) == 0u, "empty: %08x", (unsigned)fedkd_crc32c(bytes, 0));

    unsigned char data[256];
    uint32_t state = 12345u;
    for (size_t i = 0; i < sizeof data; i++) {
        state = state * 1664525u + 1013904223u;
        data[i] = (unsigned char)(state >> 24);
    }
    int mismatches = 0, split_mismatches = 0;
    for (size_t offset = 0; offset < 8; offset++)
        for (size_t n = 0; n <= 200; n++) {
            uint32_t fast = fedkd_crc32c_more(0, data + offset, n, 0);
            uint32_t slow = fedkd_crc32c_more(0, data + offset, n, 1);
            mismatches += fast != slow;
            size_t cut = n / 3;
            uint32_t pieces = fedkd_crc32c_more(fedkd_crc32c_more(0, data + offset, cut, 0),
                                                data + offset + cut, n - cut, 0);
            split_mismatches += pieces != fast;
        }
    CHECK(mismatches == 0, "%d lengths / offsets where the two paths differ", mismatches);
    CHECK(split_mismatches == 0, "%d CRCs continued over two pieces differ from the whole's",
          split_mismatches);
    return test_finish("test_crc32c");
}
