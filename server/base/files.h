// Reading the files toolgate is given (policies, cases files) with a bound on
// their size, and listing the policy files of a directory.
#ifndef TOOLGATE_SERVER_BASE_FILES_H_
#define TOOLGATE_SERVER_BASE_FILES_H_

#include <sys/stat.h>

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace toolgate {

// The largest policy or cases file read (16 MiB): far above any real policy,
// and small enough that reading one cannot exhaust a server's memory.
inline constexpr size_t kMaxInputFileBytes = size_t{16} << 20;

// A regular file open for reading; closed when destroyed.
class RegularFile {
 public:
  // Opens `path`, following symlinks. Errors name the path: NOT_FOUND when it
  // cannot be opened (missing, not permitted); INVALID_ARGUMENT when it is not
  // a regular file (a directory, a FIFO, a device: never blocks on one).
  static absl::StatusOr<RegularFile> Open(const std::string& path);

  RegularFile(RegularFile&& other) noexcept;
  RegularFile& operator=(RegularFile&& other) noexcept;
  RegularFile(const RegularFile&) = delete;
  RegularFile& operator=(const RegularFile&) = delete;
  ~RegularFile();

  // What fstat(2) said when it was opened (identity, size, times).
  const struct stat& info() const { return info_; }

  // Reads what is left of the file. INVALID_ARGUMENT "<path>: file is larger
  // than <max_bytes>" when it holds more than `max_bytes` (whatever its size
  // said when opened: at most max_bytes + 1 bytes are ever read); NOT_FOUND
  // when reading fails.
  absl::StatusOr<std::string> ReadAll(size_t max_bytes);

 private:
  RegularFile(std::string path, int fd, const struct stat& info);

  std::string path_;
  int fd_ = -1;
  struct stat info_ {};
};

// Opens `path` as a RegularFile and reads all of it (at most `max_bytes`),
// with RegularFile's errors.
absl::StatusOr<std::string> ReadRegularFile(const std::string& path,
                                            size_t max_bytes = kMaxInputFileBytes);

// The largest secret file read (a password, a key): 4 KiB.
inline constexpr size_t kMaxSecretFileBytes = 4096;

// Reads a secret (a password, a key) from `path`, which flag `flag` (such as
// "--redis-password-file") named: the file's bytes with one trailing newline
// ("\n" or "\r\n") removed. INVALID_ARGUMENT "<flag>: <why>" when the file
// cannot be opened or read, is not a regular file, holds more than
// kMaxSecretFileBytes, or is empty (after the newline is removed). Messages
// never hold any of the content.
absl::StatusOr<std::string> ReadSecretFile(const std::string& path, const std::string& flag);

// What identifies a file's version cheaply (stat(2), following symlinks):
// a file replaced, renamed over or rewritten gets another stamp. The default
// stamp stands for "cannot be stat'ed".
struct FileStamp {
  dev_t dev = 0;
  ino_t ino = 0;
  int64_t size = -1;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  bool operator==(const FileStamp& o) const {
    return dev == o.dev && ino == o.ino && size == o.size && mtime_ns == o.mtime_ns &&
           ctime_ns == o.ctime_ns;
  }
  bool operator!=(const FileStamp& o) const { return !(*this == o); }
};
FileStamp StampFile(const std::string& path);

// True for the names of files a policy directory is made of: *.yaml, *.yml
// and *.json, not hidden (not starting with '.', as a Kubernetes ConfigMap's
// "..data" entries).
bool IsPolicyFileName(const std::string& name);

// The policy files in directory `dir`: the entries whose name passes
// IsPolicyFileName and that are (or link to) regular files, sorted by name.
// NOT_FOUND "<dir>: <why>" when the directory cannot be listed, and
// "<dir>/<name>: symbolic link to <target>, which does not exist" (or
// "cannot be followed: <why>") for a policy file's name that is a dangling
// or unfollowable symlink: its rules must not silently vanish.
// Bounded by the directory: it holds every entry's name once.
absl::StatusOr<std::vector<std::filesystem::path>> ListPolicyFiles(const std::string& dir);

// "16 MiB" for whole mebibytes, "N bytes" otherwise.
std::string FormatByteSize(size_t bytes);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_BASE_FILES_H_
