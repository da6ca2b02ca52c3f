#pragma once
// Line editing for the REPL on libedit: prompts, persistent history, Ctrl-C
// that cancels the line being typed (instead of killing the program) and a
// completion hook on Tab. Knows nothing about Lua.
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace flare::lua {

struct Completion {
  size_t start = 0;  // byte offset, in the text before the cursor, of the word being completed
  std::vector<std::string> candidates;  // full replacements for that word
};

class LineEditor {
 public:
  enum class Status { line, cancelled, eof, terminated };
  struct Result {
    Status status;
    std::string line;  // without the trailing newline
  };
  using Completer = std::function<Completion(const std::string& before_cursor)>;

  // history_path: "" = no persistent history.
  LineEditor(const std::string& program, const std::string& history_path);
  ~LineEditor();
  LineEditor(const LineEditor&) = delete;
  LineEditor& operator=(const LineEditor&) = delete;

  // prompt may hold ANSI colour sequences; they are not counted as columns.
  Result read(const std::string& prompt);
  // Adds to the history and saves the history file; returns false (and keeps
  // going) when the file cannot be written.
  bool add_history(const std::string& line);
  void set_completer(Completer c);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Lays out words in columns for a terminal `width` columns wide.
std::string format_columns(const std::vector<std::string>& words, int width);

// Longest common prefix of all words ("" for none).
std::string common_prefix(const std::vector<std::string>& words);

}  // namespace flare::lua
