! api_test.f90: every call of the ckp_util Fortran module, and the status codes they
! return. Run as api_test DIR; prints "ok" and stops with 0 when every check passed.
program api_test
  use, intrinsic :: iso_c_binding
  use ckp_util
  implicit none
  real(c_double), allocatable, target :: a(:, :)
  integer(c_int64_t), target :: counter
  type(c_ptr) :: file, ca, cc, other
  character(len=4096) :: dir
  integer :: failures = 0, newest, nv, vlist(4), life

  call get_command_argument(1, dir)
  allocate (a(30, 40))
  a = 1
  counter = 7

  call expect(ckpOpen(trim(dir) // '/f.ckp', 'colour=blue', file), CKP_EINVAL, 'bad option')
  call truth(index(ckpLastError(), 'unknown key "colour"') > 0, 'message names the key')
  call expect(ckpOpen(trim(dir) // '/f.ckp', 'sync=every:2 keep=3', file), CKP_OK, 'open')
  call expect(ckpOpen(trim(dir) // '/f.ckp', file=other), CKP_EWOULDBLOCK, 'second open')
  call expect(ckpRegister(file, 'a', c_loc(a), size(a, kind=c_size_t) * c_sizeof(a(1, 1)), ca), CKP_OK, 'register a')
  call expect(ckpRegister(file, 'counter  ', c_loc(counter), c_sizeof(counter), cc), CKP_OK, 'register counter')
  call expect(ckpRegister(file, 'a', c_loc(a), 8_c_size_t, other), CKP_EEXIST, 'register a twice')
  call expect(ckpRegister(file, '', c_loc(a), 8_c_size_t, other), CKP_EINVAL, 'empty name')
  call expect(ckpRegister(file, 'z', c_loc(a), 0_c_size_t, other), CKP_EINVAL, 'size 0')
  call truth(c_associated(ckpLocate(file, 'counter'), cc), 'locate counter (trailing blanks trimmed)')
  call truth(.not. c_associated(ckpLocate(file, 'nobody')), 'locate nobody')
  call expect(ckpNewest(ca, newest), CKP_OK, 'newest')
  call truth(newest == 0, 'nothing saved yet')
  call expect(ckpRestore(ca, 0), CKP_ERANGE, 'restore before a save')
  call expect(ckpSave(ca), CKP_OK, 'save a')
  a = 2
  counter = 8
  call expect(ckpSaveAll(file), CKP_OK, 'save all')
  call expect(ckpSync(file), CKP_OK, 'sync')
  call expect(ckpNewest(ca, newest), CKP_OK, 'newest')
  call truth(newest == 2, 'a has two versions')
  call expect(ckpVersions(ca, vlist, nv), CKP_OK, 'versions')
  call truth(nv == 2 .and. vlist(1) == 1 .and. vlist(2) == 2, 'versions 1 and 2')
  a = 0
  call expect(ckpRestore(ca, 1), CKP_OK, 'restore a 1')
  call truth(all(abs(a - 1) < 0.5d0), 'a is version 1')
  call expect(ckpRestore(ca, -1), CKP_OK, 'restore a -1')
  call truth(all(abs(a - 1) < 0.5d0), 'a is version 1 again')
  call expect(ckpRestoreAll(file, 0), CKP_OK, 'restore all 0')
  call truth(all(abs(a - 2) < 0.5d0) .and. counter == 8, 'everything is the newest')
  call expect(ckpRestoreAll(file, 2), CKP_ERANGE, 'restore all 2 (counter has one version)')
  call expect(ckpUnregister(cc), CKP_OK, 'unregister')
  call expect(ckpUnregister(cc), CKP_ENOENT, 'unregister twice')
  call truth(ckpStrerror(CKP_ERANGE) == 'ckp: no such version', 'strerror')
  call expect(ckpClose(file), CKP_OK, 'close')
  call expect(ckpClose(file), CKP_EBADF, 'close twice')
  call expect(ckpSave(ca), CKP_EBADF, 'save after close')
  call truth(index(ckpLastError(), 'closed') > 0, 'message says closed')
  ! The counter's size differs from what is saved under "a".
  call expect(ckpOpen(trim(dir) // '/f.ckp', file=file), CKP_OK, 'reopen')
  call expect(ckpRegister(file, 'a', c_loc(counter), c_sizeof(counter), ca), CKP_OK, 'register a small')
  call expect(ckpRestore(ca, 0), CKP_EMSGSIZE, 'restore of another size')
  call expect(ckpClose(file), CKP_OK, 'close')

  ! The remote tier, with a directory store.
  call expect(ckpFlush(file), CKP_EBADF, 'flush after close')
  call expect(ckpOpen(trim(dir) // '/f.ckp', 'every=2', file), CKP_EINVAL, 'every= without remote=')
  call truth(index(ckpLastError(), 'every= needs remote=') > 0, 'message names the key')
  call expect(ckpOpen(trim(dir) // '/f.ckp', 'remote=' // trim(dir) // '/store rank=2 ranks=2', file), &
              CKP_EINVAL, 'rank not below ranks')
  call expect(ckpOpen(trim(dir) // '/f.ckp', file=file), CKP_OK, 'reopen without remote')
  call expect(ckpFlush(file), CKP_OK, 'flush without remote')
  call expect(ckpJobVersion(file, newest), CKP_EINVAL, 'job version without remote')
  call expect(ckpRestoreJob(file, newest), CKP_EINVAL, 'restore job without remote')
  call expect(ckpClose(file), CKP_OK, 'close')
  call expect(ckpOpen(trim(dir) // '/r.ckp', 'keep=2 remote=' // trim(dir) // '/store', file), CKP_OK, 'open remote')
  call expect(ckpRegister(file, 'a', c_loc(a), size(a, kind=c_size_t) * c_sizeof(a(1, 1)), ca), CKP_OK, 'register a')
  call expect(ckpJobVersion(file, newest), CKP_OK, 'job version')
  call truth(newest == 0, 'no job version yet')
  a = 5
  call expect(ckpSaveAll(file), CKP_OK, 'save 1')
  a = 6
  call expect(ckpSaveAll(file), CKP_OK, 'save 2')
  call expect(ckpFlush(file), CKP_OK, 'flush')
  call expect(ckpJobVersion(file, newest), CKP_OK, 'job version')
  call truth(newest == 2, 'job version 2')
  call expect(ckpJobLife(file, life, newest), CKP_OK, 'job life')
  call truth(life == 1 .and. newest == 2, 'life 1, job version 2')
  call expect(ckpClose(file), CKP_OK, 'close')
  ! Elsewhere: a new local file, the same store.
  a = 0
  call expect(ckpOpen(trim(dir) // '/r2.ckp', 'keep=2 remote=' // trim(dir) // '/store', file), CKP_OK, 'open elsewhere')
  call expect(ckpRegister(file, 'a', c_loc(a), size(a, kind=c_size_t) * c_sizeof(a(1, 1)), ca), CKP_OK, 'register a')
  newest = -1
  call expect(ckpRestoreJob(file, newest), CKP_OK, 'restore job')
  call truth(newest == 2 .and. all(abs(a - 6) < 0.5d0), 'restored version 2 from the store')
  call expect(ckpJobLife(file, life, newest), CKP_OK, 'job life after the restart')
  call truth(life == 2 .and. newest == 2, 'the restart began life 2 at version 2')
  call expect(ckpRestoreJob(file), CKP_OK, 'restore job, no version wanted')
  call truth(index(ckpStrerror(CKP_EREMOTEIO), 'remote') > 0, 'strerror of EREMOTEIO')
  call expect(ckpClose(file), CKP_OK, 'close')
  call expect(ckpJobVersion(file, newest), CKP_EBADF, 'job version after close')
  call expect(ckpJobLife(file, life, newest), CKP_EBADF, 'job life after close')
  call truth(index(ckpStrerror(CKP_ERESTART), 'ckpRestoreJob') > 0, 'strerror of ERESTART')

  if (failures /= 0) then
    print '(i0,a)', failures, ' checks failed'
    stop 1
  end if
  print '(a)', 'ok'

contains

  subroutine expect(st, want, what)
    integer, intent(in) :: st, want
    character(len=*), intent(in) :: what
    if (st /= want) then
      print '(a,a,i0,a,i0,a,a)', what, ': status ', st, ', want ', want, ': ', ckpLastError()
      failures = failures + 1
    end if
  end subroutine

  subroutine truth(cond, what)
    logical, intent(in) :: cond
    character(len=*), intent(in) :: what
    if (.not. cond) then
      print '(a,a)', 'FAIL: ', what
      failures = failures + 1
    end if
  end subroutine

end program api_test
