#pragma once
// Ctrl-C handling that works while blocked in C: the signal handler sets a flag
// and writes to a self-pipe, so event loops that poll wake_fd() return at once.
//
// First SIGINT: sets the flag (the running wait raises flare::Interrupted).
// Signals during cleanup are counted; the third one ends the process (hard exit).
// SIGTERM: the same flag, and the process ends (hard exit) kTermGraceSeconds
// after the first SIGTERM if it is still running by then (a stuck cleanup).
//
// A hard exit runs the emergency hook (set_emergency_hook) on a thread of its
// own, which releases cloud resources with plain C++ calls, for at most
// kEmergencySeconds, then _exits with 128 + the signal.
namespace flare::interrupt {

constexpr unsigned kTermGraceSeconds = 5;
constexpr unsigned kEmergencySeconds = 4;

void install_handlers();  // SIGINT and SIGTERM (and SIGALRM for the deadlines)
bool pending();           // an interrupt arrived and was not consumed
int signal_number();      // SIGINT or SIGTERM of the pending interrupt, 0 if none
int last_signal();        // the most recent signal received, kept after clear()
void clear();             // consume the pending interrupt and drain the pipe
void check();             // throw flare::Interrupted if pending() (and clear it)
int wake_fd();            // readable while an interrupt is pending
int count();              // signals received since the last reset_count()
void reset_count();
void raise_for_test(int signo);  // behaves as if the signal arrived

// Called from the signal handler (async-signal context) after the flag is set;
// the Lua host uses it to arm a hook so pure-Lua loops are interrupted too.
// The handler runs on the thread that called install_handlers(): a signal that
// lands on another thread is passed on to it.
void set_signal_callback(void (*cb)(int signo));

// The function a hard exit runs before _exit (on the emergency thread, started
// here, with every signal blocked; it must finish within kEmergencySeconds).
// nullptr removes it.
void set_emergency_hook(void (*hook)());
// Runs the emergency hook now on this thread, once per process (for fatal
// errors outside signals: a Lua panic, std::terminate).
void run_emergency_hook();

// Sleep up to `seconds`, returning early (by throwing Interrupted) on interrupt.
void sleep_interruptible(double seconds);

}  // namespace flare::interrupt
