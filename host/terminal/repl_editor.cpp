#include "terminal/repl_editor.hpp"

#include <errno.h>
#include <histedit.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <cwchar>
#include <filesystem>

#include "runtime/interrupt.hpp"
#include "runtime/shared_library.hpp"

namespace flare::lua {

// The character our input function hands libedit when Ctrl-C arrives; it is
// bound to flare-cancel (a literal Ctrl-C, with ISIG off, lands there too).
constexpr wchar_t kCancelChar = 3;

namespace {

// libedit's functions, resolved when the first REPL starts: scripts do not
// pay for loading it (see runtime/shared_library.hpp).
struct LibEdit {
  decltype(&::el_init) el_init;
  decltype(&::el_end) el_end;
  decltype(&::el_set) el_set;
  decltype(&::el_get) el_get;
  decltype(&::el_gets) el_gets;
  decltype(&::el_push) el_push;
  decltype(&::el_line) el_line;
  decltype(&::el_insertstr) el_insertstr;
  decltype(&::el_resize) el_resize;
  decltype(&::el_source) el_source;
  decltype(&::history_init) history_init;
  decltype(&::history_end) history_end;
  decltype(&::history) history;
};

const LibEdit& editline() {
  static const LibEdit api = [] {
    static SharedLibrary lib({"libedit.so.2"}, "the REPL's line editor (libedit)");
    LibEdit e{};
#define FLARE_EDIT_FN(name) e.name = lib.function<std::remove_pointer_t<decltype(e.name)>>(#name)
    FLARE_EDIT_FN(el_init);
    FLARE_EDIT_FN(el_end);
    FLARE_EDIT_FN(el_set);
    FLARE_EDIT_FN(el_get);
    FLARE_EDIT_FN(el_gets);
    FLARE_EDIT_FN(el_push);
    FLARE_EDIT_FN(el_line);
    FLARE_EDIT_FN(el_insertstr);
    FLARE_EDIT_FN(el_resize);
    FLARE_EDIT_FN(el_source);
    FLARE_EDIT_FN(history_init);
    FLARE_EDIT_FN(history_end);
    FLARE_EDIT_FN(history);
#undef FLARE_EDIT_FN
    return e;
  }();
  return api;
}

}  // namespace

struct LineEditor::Impl {
  EditLine* el = nullptr;
  History* hist = nullptr;
  HistEvent ev{};
  std::string history_path;
  std::string prompt;  // with \1 around colour sequences
  Completer completer;
  bool cancelled = false;
  bool terminated = false;
  std::mbstate_t mb{};
};

namespace {

LineEditor::Impl* impl_of(EditLine* el) {
  void* data = nullptr;
  editline().el_get(el, EL_CLIENTDATA, &data);
  return static_cast<LineEditor::Impl*>(data);
}

char* prompt_text(EditLine* el) {
  return impl_of(el)->prompt.data();
}

std::atomic<bool> g_resized{false};
std::atomic<bool> g_continued{false};

void on_terminal_signal(int signo) {
  if (signo == SIGWINCH) g_resized.store(true);
  if (signo == SIGCONT) g_continued.store(true);
}

void install_terminal_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_terminal_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: poll() in read_char must return
  sigaction(SIGWINCH, &sa, nullptr);
  sigaction(SIGCONT, &sa, nullptr);
}

// Reads one character for libedit, waiting on the terminal and on the
// interrupt self-pipe together so that Ctrl-C is seen at once.
int read_char(EditLine* el, wchar_t* out) {
  LineEditor::Impl* self = impl_of(el);
  for (;;) {
    if (g_resized.exchange(false)) {
      editline().el_resize(el);
      editline().el_set(el, EL_REFRESH);
    }
    if (g_continued.exchange(false)) {
      // Back from Ctrl-Z: the shell has put the terminal in its own mode.
      // libedit still believes it is in raw mode, so leave it first.
      editline().el_set(el, EL_PREP_TERM, 0);
      editline().el_set(el, EL_PREP_TERM, 1);
      editline().el_set(el, EL_REFRESH);
    }
    if (flare::interrupt::pending()) {
      if (flare::interrupt::signal_number() == SIGTERM) self->terminated = true;
      flare::interrupt::clear();
      flare::interrupt::reset_count();
      *out = kCancelChar;
      return 1;
    }
    struct pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {flare::interrupt::wake_fd(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (fds[1].revents != 0) continue;
    if (fds[0].revents == 0) continue;
    char c;
    ssize_t n = read(STDIN_FILENO, &c, 1);
    if (n == 0) return 0;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return -1;
    }
    wchar_t wc;
    size_t r = std::mbrtowc(&wc, &c, 1, &self->mb);
    if (r == static_cast<size_t>(-2)) continue;  // the middle of a multibyte character
    if (r == static_cast<size_t>(-1)) {
      self->mb = std::mbstate_t{};
      wc = static_cast<unsigned char>(c);
    }
    *out = wc;
    return 1;
  }
}

unsigned char cancel_line(EditLine* el, int) {
  impl_of(el)->cancelled = true;
  editline().el_push(el, "\n");  // ends the line through ed-newline, which leaves the display tidy
  return CC_NORM;
}

int terminal_width() {
  struct winsize ws {};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

unsigned char complete_word(EditLine* el, int) {
  LineEditor::Impl* self = impl_of(el);
  if (!self->completer) return CC_ERROR;
  const LineInfo* li = editline().el_line(el);
  std::string before(li->buffer, li->cursor);
  Completion c = self->completer(before);
  if (c.candidates.empty() || c.start > before.size()) return CC_ERROR;
  std::string typed = before.substr(c.start);
  std::string common = common_prefix(c.candidates);
  if (common.size() > typed.size() && common.compare(0, typed.size(), typed) == 0) {
    editline().el_insertstr(el, common.c_str() + typed.size());
    return CC_REFRESH;
  }
  if (c.candidates.size() == 1) return CC_REFRESH;
  std::string listing = format_columns(c.candidates, terminal_width());
  std::string out = "\r\n";
  for (char ch : listing) out += ch == '\n' ? std::string("\r\n") : std::string(1, ch);
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  return CC_REDISPLAY;
}

// "\x1b[1m> \x1b[0m" -> "\1\x1b[1m\1> \1\x1b[0m\1" so libedit does not count
// the escape sequences as columns.
std::string mark_escapes(const std::string& prompt) {
  std::string out;
  for (size_t i = 0; i < prompt.size(); i++) {
    if (prompt[i] == '\x1b') {
      size_t end = prompt.find('m', i);
      if (end == std::string::npos) end = prompt.size() - 1;
      out += '\1';
      out += prompt.substr(i, end - i + 1);
      out += '\1';
      i = end;
    } else {
      out += prompt[i];
    }
  }
  return out;
}

}  // namespace

LineEditor::LineEditor(const std::string& program, const std::string& history_path)
    : impl_(std::make_unique<Impl>()) {
  impl_->history_path = history_path;
  impl_->hist = editline().history_init();
  editline().history(impl_->hist, &impl_->ev, H_SETSIZE, 1000);
  editline().history(impl_->hist, &impl_->ev, H_SETUNIQUE, 1);
  if (!history_path.empty())
    editline().history(impl_->hist, &impl_->ev, H_LOAD, history_path.c_str());

  impl_->el = editline().el_init(program.c_str(), stdin, stdout, stderr);
  editline().el_set(impl_->el, EL_CLIENTDATA, impl_.get());
  editline().el_set(impl_->el, EL_EDITOR, "emacs");
  // No EL_SIGNAL: its SIGINT handler leaves the terminal in cooked mode when
  // Ctrl-C lands outside a read (during completion). Resizes and resuming
  // after Ctrl-Z are handled in read_char instead.
  install_terminal_signal_handlers();
  editline().el_set(impl_->el, EL_HIST, editline().history, impl_->hist);
  editline().el_set(impl_->el, EL_PROMPT_ESC, prompt_text, '\1');
  editline().el_set(impl_->el, EL_GETCFN, read_char);
  editline().el_source(impl_->el, nullptr);  // the user's ~/.editrc (e.g. vi mode)
  editline().el_set(impl_->el, EL_ADDFN, "flare-complete", "complete the word before the cursor",
                    complete_word);
  editline().el_set(impl_->el, EL_ADDFN, "flare-cancel", "discard the line being typed",
                    cancel_line);
  editline().el_set(impl_->el, EL_BIND, "^I", "flare-complete", nullptr);
  editline().el_set(impl_->el, EL_BIND, "^C", "flare-cancel", nullptr);
}

LineEditor::~LineEditor() {
  editline().el_end(impl_->el);
  editline().history_end(impl_->hist);
}

LineEditor::Result LineEditor::read(const std::string& prompt) {
  impl_->prompt = mark_escapes(prompt);
  impl_->cancelled = false;
  impl_->mb = std::mbstate_t{};
  int count = 0;
  const char* line = editline().el_gets(impl_->el, &count);
  if (impl_->terminated) return {Status::terminated, ""};
  if (impl_->cancelled) {
    impl_->cancelled = false;
    return {Status::cancelled, ""};
  }
  if (line == nullptr || count <= 0) return {Status::eof, ""};
  std::string text(line, static_cast<size_t>(count));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return {Status::line, text};
}

bool LineEditor::add_history(const std::string& line) {
  if (line.find_first_not_of(" \t") == std::string::npos) return true;
  editline().history(impl_->hist, &impl_->ev, H_ENTER, line.c_str());
  if (impl_->history_path.empty()) return true;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(impl_->history_path).parent_path(), ec);
  return editline().history(impl_->hist, &impl_->ev, H_SAVE, impl_->history_path.c_str()) >= 0;
}

void LineEditor::set_completer(Completer c) {
  impl_->completer = std::move(c);
}

std::string common_prefix(const std::vector<std::string>& words) {
  if (words.empty()) return "";
  std::string prefix = words[0];
  for (const auto& w : words) {
    size_t n = 0;
    while (n < prefix.size() && n < w.size() && prefix[n] == w[n]) n++;
    prefix.resize(n);
  }
  return prefix;
}

std::string format_columns(const std::vector<std::string>& words, int width) {
  constexpr size_t kMaxShown = 200;
  size_t shown = std::min(words.size(), kMaxShown);
  size_t longest = 1;
  for (size_t i = 0; i < shown; i++) longest = std::max(longest, words[i].size());
  size_t col_width = longest + 2;
  size_t cols = std::max<size_t>(1, static_cast<size_t>(std::max(width, 1)) / col_width);
  size_t rows = (shown + cols - 1) / cols;
  std::string out;
  for (size_t r = 0; r < rows; r++) {
    std::string line;
    for (size_t c = 0; c < cols; c++) {
      size_t i = c * rows + r;
      if (i >= shown) break;
      line += words[i];
      if ((c + 1) * rows + r < shown) line += std::string(col_width - words[i].size(), ' ');
    }
    out += line + "\n";
  }
  if (words.size() > shown) out += "... and " + std::to_string(words.size() - shown) + " more\n";
  return out;
}

}  // namespace flare::lua
