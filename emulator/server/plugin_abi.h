/* The C interface of libflare-emulator.so: flare's emulator as a module the
 * flare program opens when a script first starts an emulator (see
 * loaded_emulator.hpp). Plain C so that no C++ object crosses between the
 * program and the module, which may each carry their own C++ runtime. */
#ifndef FLARE_EMULATOR_PLUGIN_ABI_H
#define FLARE_EMULATOR_PLUGIN_ABI_H

#ifdef __cplusplus
extern "C" {
#endif

#define FLARE_EMULATOR_ABI_VERSION 1

typedef struct flare_emulator flare_emulator;

typedef struct {
  int abi_version; /* FLARE_EMULATOR_ABI_VERSION */
  const char* host;
  int port;
  const char* state_dir;
  const char* api_key;
  double provision_delay_s;
  const char* faults;
  int log_requests;
  double idle_timeout_s;
} flare_emulator_options;

typedef struct {
  char code[64];
  char message[1024];
} flare_emulator_error;

/* Creates and starts an emulator; NULL with *error filled on failure. */
flare_emulator* flare_emulator_start(const flare_emulator_options* options,
                                     flare_emulator_error* error);
/* "base_url", "api_key", "account_id", "state_dir" or "api_key_path"; the
 * string lives as long as the emulator, NULL for an unknown field. */
const char* flare_emulator_field(const flare_emulator* emulator, const char* field);
int flare_emulator_port(const flare_emulator* emulator);
/* Finishes requests in flight, closes the database and frees the emulator. */
void flare_emulator_stop(flare_emulator* emulator);
const char* flare_emulator_sqlite_version(void);

#ifdef __cplusplus
}
#endif

#endif
