#pragma once
// Where snapshots live in a bucket directory (see BUCKET.md):
//   <bucket>/<identity>/model.safetensors   a base snapshot (full bf16 checkpoint)
//   <bucket>/<identity>/model.delta         a delta snapshot (flare-delta-v1)
#include <string>

namespace flare::emulator {

inline constexpr const char* kBaseFile = "model.safetensors";
inline constexpr const char* kDeltaFile = "model.delta";

std::string bucket_url(const std::string& dir);  // file:///abs/dir/
// Throws std::invalid_argument when `identity` cannot name a bucket entry
// (empty, '/', '..', control characters, longer than 200 bytes).
void check_snapshot_name(const std::string& identity);
std::string snapshot_dir(const std::string& bucket, const std::string& identity);
std::string base_path(const std::string& bucket, const std::string& identity);
std::string delta_path(const std::string& bucket, const std::string& identity);

}  // namespace flare::emulator
