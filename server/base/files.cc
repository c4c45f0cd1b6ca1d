#include "server/base/files.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace toolgate {

namespace fs = std::filesystem;

namespace {

std::string ErrnoText(int err) { return std::error_code(err, std::generic_category()).message(); }

}  // namespace

absl::StatusOr<RegularFile> RegularFile::Open(const std::string& path) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused
  // below); it does not change how a regular file reads.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": ", ErrnoText(errno)));
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::NotFoundError(absl::StrCat(path, ": ", ErrnoText(err)));
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, S_ISDIR(info.st_mode) ? ": is a directory" : ": is not a regular file"));
  }
  return RegularFile(path, fd, info);
}

RegularFile::RegularFile(std::string path, int fd, const struct stat& info)
    : path_(std::move(path)), fd_(fd), info_(info) {}

RegularFile::RegularFile(RegularFile&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)), info_(other.info_) {}

RegularFile& RegularFile::operator=(RegularFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    info_ = other.info_;
  }
  return *this;
}

RegularFile::~RegularFile() {
  if (fd_ >= 0) ::close(fd_);
}

absl::StatusOr<std::string> RegularFile::ReadAll(size_t max_bytes) {
  std::string out;
  // The size when opened is a hint only: the file may change while read.
  out.reserve(std::min(static_cast<size_t>(std::max<off_t>(info_.st_size, 0)), max_bytes));
  char buf[64 << 10];
  while (true) {
    const ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::NotFoundError(absl::StrCat(path_, ": ", ErrnoText(errno)));
    }
    if (n == 0) return out;
    if (static_cast<size_t>(n) > max_bytes - out.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": file is larger than ", FormatByteSize(max_bytes)));
    }
    out.append(buf, static_cast<size_t>(n));
  }
}

absl::StatusOr<std::string> ReadRegularFile(const std::string& path, size_t max_bytes) {
  absl::StatusOr<RegularFile> file = RegularFile::Open(path);
  if (!file.ok()) return file.status();
  return file->ReadAll(max_bytes);
}

absl::StatusOr<std::string> ReadSecretFile(const std::string& path, const std::string& flag) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, ": no file named"));
  absl::StatusOr<std::string> content = ReadRegularFile(path, kMaxSecretFileBytes);
  if (!content.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", content.status().message()));
  }
  std::string secret = *std::move(content);
  if (absl::EndsWith(secret, "\n")) secret.pop_back();
  if (absl::EndsWith(secret, "\r")) secret.pop_back();
  if (secret.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " is empty"));
  }
  return secret;
}

bool IsPolicyFileName(const std::string& name) {
  return !name.empty() && name[0] != '.' &&
         (absl::EndsWith(name, ".yaml") || absl::EndsWith(name, ".yml") ||
          absl::EndsWith(name, ".json"));
}

absl::StatusOr<std::vector<fs::path>> ListPolicyFiles(const std::string& dir) {
  std::error_code ec;
  std::vector<fs::path> files;
  fs::directory_iterator it(dir, ec);
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!IsPolicyFileName(name)) continue;
    std::error_code status_ec;
    const fs::file_status st = fs::status(it->path(), status_ec);
    if (fs::is_regular_file(st)) {
      files.push_back(it->path());
      continue;
    }
    // A policy file's name that is not a readable regular file would drop
    // its rules without a word: a dangling or looping symlink, or one that
    // cannot be followed, is an error. (A directory or other special file
    // so named is left out, as before; a file that vanished since the
    // listing is not there any more.)
    std::error_code link_ec;
    if (fs::is_symlink(it->symlink_status(link_ec)) && !link_ec) {
      if (status_ec || !fs::exists(st)) {
        std::error_code target_ec;
        const fs::path target = fs::read_symlink(it->path(), target_ec);
        return absl::NotFoundError(
            absl::StrCat(it->path().string(), ": symbolic link to ",
                         target_ec ? std::string("?") : target.string(),
                         status_ec && status_ec != std::errc::no_such_file_or_directory
                             ? absl::StrCat(" cannot be followed: ", status_ec.message())
                             : std::string(", which does not exist")));
      }
    }
  }
  if (ec) return absl::NotFoundError(absl::StrCat(dir, ": ", ec.message()));
  std::sort(files.begin(), files.end());
  return files;
}

std::string FormatByteSize(size_t bytes) {
  constexpr size_t kMiB = size_t{1} << 20;
  if (bytes >= kMiB && bytes % kMiB == 0) return absl::StrCat(bytes / kMiB, " MiB");
  return absl::StrCat(bytes, " bytes");
}

FileStamp StampFile(const std::string& path) {
  FileStamp s;
  struct stat st {};
  if (path.empty() || stat(path.c_str(), &st) != 0) return s;
  s.dev = st.st_dev;
  s.ino = st.st_ino;
  s.size = st.st_size;
  s.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
  s.ctime_ns = int64_t{st.st_ctim.tv_sec} * 1'000'000'000 + st.st_ctim.tv_nsec;
  return s;
}

}  // namespace toolgate
