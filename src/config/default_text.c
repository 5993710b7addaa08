/* The built-in default config (configs/default.json, embedded at build
 * time), apart from the reader and the key table that both use it. */
#include "fedkd/config/config.h"

extern const char fedkd_default_config_json[];

const char *fedkd_config_default_text(void) { return fedkd_default_config_json; }
