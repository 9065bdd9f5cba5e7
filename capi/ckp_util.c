// The parts of the C interface written in C: each thread's last error message and
// ckpStrerror. Nothing here calls into Go.

#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "ckp_util.h"

#define LAST_ERROR_MAX 1024

static __thread char last_error[LAST_ERROR_MAX];

// ckp_set_last_error stores msg (len bytes, no NUL needed) as the calling thread's
// last error, cut at LAST_ERROR_MAX-1 bytes on a UTF-8 character boundary. The Go side
// calls it; it is not exported from the library.
__attribute__((visibility("hidden"))) void ckp_set_last_error(const char *msg, size_t len) {
	if (len >= LAST_ERROR_MAX) {
		len = LAST_ERROR_MAX - 1;
		while (len > 0 && ((unsigned char)msg[len] & 0xC0) == 0x80) {
			len--;
		}
	}
	memcpy(last_error, msg, len);
	last_error[len] = '\0';
}

const char *ckpLastError(void) {
	return last_error;
}

const char *ckpStrerror(int status) {
	switch (status) {
	case 0:
		return "ckp: success";
	case EINVAL:
		return "ckp: invalid argument";
	case ENOENT:
		return "ckp: checkpoint not found (or no such file or directory)";
	case EEXIST:
		return "ckp: checkpoint already registered";
	case ERANGE:
		return "ckp: no such version";
	case EMSGSIZE:
		return "ckp: size mismatch";
	case EBADF:
		return "ckp: file closed";
	case EWOULDBLOCK:
		return "ckp: file locked by another writer";
	case EIO:
		return "ckp: corrupt checkpoint data (or an input/output error)";
	case EFBIG:
		return "ckp: data file full (its maximum size reached)";
#ifdef EREMOTEIO
	case EREMOTEIO:
		return "ckp: remote store failed (unreachable, denied, or an upload failed)";
#endif
#ifdef ERESTART
	case ERESTART:
		return "ckp: the job went on without this rank (call ckpRestoreJob)";
#endif
	}
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
	{
		const char *s = strerrordesc_np(status);
		if (s != NULL) {
			return s;
		}
	}
#endif
	return "ckp: unknown status";
}
