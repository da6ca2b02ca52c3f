#pragma once
// Ctrl-C handling that works while blocked in C: the signal handler sets a flag
// and writes to a self-pipe, so event loops that poll wake_fd() return at once.
//
// First SIGINT: sets the flag (the running wait raises flare::Interrupted).
// Signals during cleanup are counted; the third one kills the process.
namespace flare::interrupt {

void install_handlers();          // SIGINT and SIGTERM
bool pending();                   // an interrupt arrived and was not consumed
int signal_number();              // SIGINT or SIGTERM of the pending interrupt, 0 if none
int last_signal();                // the most recent signal received, kept after clear()
void clear();                     // consume the pending interrupt and drain the pipe
void check();                     // throw flare::Interrupted if pending() (and clear it)
int wake_fd();                    // readable while an interrupt is pending
int count();                      // signals received since the last reset_count()
void reset_count();
void raise_for_test(int signo);   // behaves as if the signal arrived

// Called from the signal handler (async-signal context) after the flag is set;
// the Lua host uses it to arm a hook so pure-Lua loops are interrupted too.
void set_signal_callback(void (*cb)(int signo));

// Sleep up to `seconds`, returning early (by throwing Interrupted) on interrupt.
void sleep_interruptible(double seconds);

}  // namespace flare::interrupt
