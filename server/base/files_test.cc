// Tests of bounded file reading and policy directory listing.
#include "server/base/files.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace toolgate {
namespace {

namespace fs = std::filesystem;

::testing::AssertionResult HasSubstr(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

// A fresh, empty directory under the test temp dir, unique per test.
fs::path FreshDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const fs::path dir =
      fs::path(::testing::TempDir()) / (std::string("toolgate_files_test_") + info->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void WriteFile(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  ASSERT_TRUE(out.good()) << path;
}

TEST(ReadRegularFile, ReadsEveryByte) {
  const fs::path dir = FreshDir();
  const std::string content = std::string("a\0b\n", 4) + std::string(200'000, 'x');
  WriteFile(dir / "f.yaml", content);
  auto read = ReadRegularFile((dir / "f.yaml").string());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, content);
  WriteFile(dir / "empty.yaml", "");
  EXPECT_EQ(ReadRegularFile((dir / "empty.yaml").string()).value_or("?"), "");
}

TEST(ReadRegularFile, SizeBound) {
  const fs::path dir = FreshDir();
  WriteFile(dir / "f", std::string(100, 'x'));
  EXPECT_EQ(ReadRegularFile((dir / "f").string(), 100).value_or("?").size(), 100u);
  auto over = ReadRegularFile((dir / "f").string(), 99);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(over.status().message(), (dir / "f").string() + ": file is larger than 99 bytes");
  EXPECT_EQ(kMaxInputFileBytes, size_t{16} << 20);
  EXPECT_EQ(FormatByteSize(kMaxInputFileBytes), "16 MiB");
}

TEST(ReadSecretFile, OneTrailingNewlineRemoved) {
  const fs::path dir = FreshDir();
  WriteFile(dir / "a", "s3cret\n");
  EXPECT_EQ(ReadSecretFile((dir / "a").string(), "--x-file").value_or("?"), "s3cret");
  WriteFile(dir / "b", "s3cret\r\n");
  EXPECT_EQ(ReadSecretFile((dir / "b").string(), "--x-file").value_or("?"), "s3cret");
  WriteFile(dir / "c", " s3 cret\n\n");
  EXPECT_EQ(ReadSecretFile((dir / "c").string(), "--x-file").value_or("?"), " s3 cret\n");
  WriteFile(dir / "d", std::string(kMaxSecretFileBytes, 'k'));
  EXPECT_EQ(ReadSecretFile((dir / "d").string(), "--x-file").value_or("?").size(),
            kMaxSecretFileBytes);
}

TEST(ReadSecretFile, ErrorsNameTheFlagNotTheContent) {
  const fs::path dir = FreshDir();
  for (const std::string empty : {"", "\n", "\r\n"}) {
    WriteFile(dir / "empty", empty);
    auto read = ReadSecretFile((dir / "empty").string(), "--redis-password-file");
    ASSERT_FALSE(read.ok());
    EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(read.status().message(),
              "--redis-password-file: " + (dir / "empty").string() + " is empty");
  }
  auto missing = ReadSecretFile((dir / "missing").string(), "--redis-password-file");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(HasSubstr(std::string(missing.status().message()), "--redis-password-file: "));
  EXPECT_TRUE(HasSubstr(std::string(missing.status().message()), (dir / "missing").string()));
  WriteFile(dir / "big", "TOPSECRET" + std::string(kMaxSecretFileBytes, 'k'));
  auto big = ReadSecretFile((dir / "big").string(), "--k-file");
  ASSERT_FALSE(big.ok());
  EXPECT_TRUE(HasSubstr(std::string(big.status().message()), "--k-file: "));
  EXPECT_TRUE(HasSubstr(std::string(big.status().message()), "larger than 4096 bytes"));
  EXPECT_EQ(std::string(big.status().message()).find("TOPSECRET"), std::string::npos);
  EXPECT_FALSE(ReadSecretFile(dir.string(), "--k-file").ok());  // A directory.
  EXPECT_FALSE(ReadSecretFile("", "--k-file").ok());
}

TEST(ReadRegularFile, ErrorsNameThePath) {
  const fs::path dir = FreshDir();
  auto missing = ReadRegularFile((dir / "missing.yaml").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(HasSubstr(std::string(missing.status().message()), (dir / "missing.yaml").string()));

  auto directory = ReadRegularFile(dir.string());
  ASSERT_FALSE(directory.ok());
  EXPECT_EQ(directory.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(directory.status().message(), dir.string() + ": is a directory");

  // A FIFO is refused without waiting for a writer.
  const fs::path fifo = dir / "fifo.yaml";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto special = ReadRegularFile(fifo.string());
  ASSERT_FALSE(special.ok());
  EXPECT_EQ(special.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(special.status().message(), fifo.string() + ": is not a regular file");
}

TEST(RegularFile, InfoIsTheOpenedFile) {
  const fs::path dir = FreshDir();
  WriteFile(dir / "f", "12345");
  auto file = RegularFile::Open((dir / "f").string());
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->info().st_size, 5);
  RegularFile moved = std::move(*file);
  EXPECT_EQ(moved.ReadAll(10).value_or("?"), "12345");
  EXPECT_EQ(moved.ReadAll(10).value_or("?"), "");  // What is left.
}

TEST(IsPolicyFileName, YamlAndJsonNotHidden) {
  for (const char* name : {"a.yaml", "a.yml", "a.json", "x.y.yaml"}) {
    EXPECT_TRUE(IsPolicyFileName(name)) << name;
  }
  for (const char* name : {"", ".a.yaml", "..data", "a.txt", "yaml", "a.yaml~", "README.md"}) {
    EXPECT_FALSE(IsPolicyFileName(name)) << name;
  }
}

TEST(ListPolicyFiles, RegularPolicyFilesSortedByName) {
  const fs::path dir = FreshDir();
  WriteFile(dir / "b.json", "{}");
  WriteFile(dir / "a.yaml", "");
  WriteFile(dir / "c.yml", "");
  WriteFile(dir / "notes.txt", "");
  WriteFile(dir / ".hidden.yaml", "");
  fs::create_directory(dir / "sub.yaml");                // A directory is not a file.
  fs::create_symlink("a.yaml", dir / "link.yaml");       // A link to a file is one.
  fs::create_symlink("missing", dir / "dangling.txt");   // Not a policy file's name.
  auto files = ListPolicyFiles(dir.string());
  ASSERT_TRUE(files.ok()) << files.status();
  std::vector<std::string> names;
  for (const fs::path& f : *files) {
    EXPECT_EQ(f.parent_path(), dir);
    names.push_back(f.filename().string());
  }
  EXPECT_EQ(names, (std::vector<std::string>{"a.yaml", "b.json", "c.yml", "link.yaml"}));
}

TEST(ListPolicyFiles, DanglingPolicySymlinkIsAnError) {
  // Its rules would vanish without a word: the listing fails, naming it.
  for (const std::string name : {"gone.yaml", "gone.yml", "gone.json"}) {
    const fs::path dir = FreshDir();
    WriteFile(dir / "a.yaml", "");
    fs::create_symlink("missing-target.yaml", dir / name);
    auto files = ListPolicyFiles(dir.string());
    ASSERT_FALSE(files.ok()) << name;
    EXPECT_EQ(files.status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(files.status().message(),
              (dir / name).string() + ": symbolic link to missing-target.yaml, which does not exist");
  }
  // A loop cannot be followed either.
  const fs::path dir = FreshDir();
  fs::create_symlink("loop2.yaml", dir / "loop1.yaml");
  fs::create_symlink("loop1.yaml", dir / "loop2.yaml");
  auto files = ListPolicyFiles(dir.string());
  ASSERT_FALSE(files.ok());
  const std::string message(files.status().message());
  EXPECT_TRUE(HasSubstr(message, dir.string() + "/loop")) << message;
  EXPECT_TRUE(HasSubstr(message, ".yaml: symbolic link to loop")) << message;
  EXPECT_TRUE(HasSubstr(message, ".yaml cannot be followed: ")) << message;
}

TEST(ListPolicyFiles, MissingDirectoryIsNotFound) {
  const fs::path dir = FreshDir() / "nope";
  auto files = ListPolicyFiles(dir.string());
  ASSERT_FALSE(files.ok());
  EXPECT_EQ(files.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(HasSubstr(std::string(files.status().message()), dir.string() + ": "));
}

}  // namespace
}  // namespace toolgate
