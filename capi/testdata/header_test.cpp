// header_test.cpp: ckp_util.h from C++ (extern "C", no C-only constructs). Run as
// header_test DIR; prints "ok" and exits 0 when every call did what it should.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "ckp_util.h"

int main(int argc, char **argv) {
	if (argc != 2) return 2;
	std::string path = std::string(argv[1]) + "/cpp.ckp";
	CheckpointFile f = nullptr;
	Checkpoint c = nullptr;
	std::vector<double> v(1000, 1.5);
	int newest = -1;
	bool ok = ckpOpen(path.c_str(), "keep=2", &f) == 0 &&
	          ckpRegister(f, "v", v.data(), v.size() * sizeof(double), &c) == 0 &&
	          ckpLocate(f, "v") == c && ckpSave(c) == 0;
	v.assign(v.size(), 0);
	ok = ok && ckpSaveAll(f) == 0 && ckpRestore(c, -1) == 0 && v[999] == 1.5 &&
	     ckpRestoreAll(f, 0) == 0 && v[999] == 0 && ckpSync(f) == 0 &&
	     ckpNewest(c, &newest) == 0 && newest == 2 && ckpUnregister(c) == 0 &&
	     ckpSave(c) == ENOENT && std::strstr(ckpLastError(), "not registered") != nullptr &&
	     std::string(ckpStrerror(ERANGE)) == "ckp: no such version" && ckpFlush(f) == 0 &&
	     ckpJobVersion(f, &newest) == EINVAL && ckpRestoreJob(f, nullptr) == EINVAL && ckpClose(f) == 0;
	std::puts(ok ? "ok" : ckpLastError());
	return ok ? 0 : 1;
}
