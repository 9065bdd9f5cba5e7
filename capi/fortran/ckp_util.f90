! ckp_util: the Fortran module of ckp, over the C interface declared in ckp_util.h (read
! it for what each call does and the status codes it returns). Compile this file with
! your program and link libckp:
!
!   gfortran -c ckp_util.f90                  ! writes ckp_util.mod
!   gfortran prog.f90 ckp_util.o -L DIR -lckp -Wl,-rpath,DIR
!
! Handles are TYPE(C_PTR) (from ISO_C_BINDING). A region is given by its address,
! C_LOC(array), and its size in bytes, SIZE(array, KIND=C_SIZE_T) * C_SIZEOF(array(1))
! (C_SIZEOF(x) for a scalar), of an array with the TARGET attribute that is contiguous:
! a whole array, or a CONTIGUOUS pointer or assumed-shape array; never an array section
! or an expression, whose temporary copy would vanish after the call. The library reads the array during
! ckpSave and ckpSaveAll and writes it during ckpRestore and ckpRestoreAll; keep it
! allocated until ckpUnregister or ckpClose.
!
!   use, intrinsic :: iso_c_binding
!   use ckp_util
!   real(c_double), allocatable, target :: grid(:,:)
!   type(c_ptr) :: file, ckpt
!   integer :: st
!   allocate (grid(512, 512))
!   st = ckpOpen('run.ckp', 'sync=every:10 keep=3', file)
!   if (st /= 0) stop ckpLastError()
!   st = ckpRegister(file, 'grid', c_loc(grid), size(grid, kind=c_size_t) * c_sizeof(grid(1,1)), ckpt)
!   if (ckpRestore(ckpt, 0) == 0) print *, 'resumed'
!   ...
!   st = ckpSave(ckpt)
!
! Names are Fortran strings; trailing blanks are dropped (TRIM) before the call.
! The status codes are errno values; CKP_E* below are Linux's.
module ckp_util
  use, intrinsic :: iso_c_binding
  implicit none
  private

  public :: ckpOpen, ckpClose, ckpLocate, ckpRegister, ckpUnregister, ckpSave, ckpSaveAll
  public :: ckpRestore, ckpRestoreAll, ckpSync, ckpNewest, ckpVersions, ckpStrerror, ckpLastError
  public :: ckpFlush, ckpJobVersion, ckpJobLife, ckpRestoreJob

  ! Status codes (errno values on Linux).
  integer, parameter, public :: CKP_OK = 0
  integer, parameter, public :: CKP_EINVAL = 22      ! bad argument or option
  integer, parameter, public :: CKP_ENOENT = 2       ! checkpoint not registered
  integer, parameter, public :: CKP_EEXIST = 17      ! name already registered
  integer, parameter, public :: CKP_ERANGE = 34      ! no such version
  integer, parameter, public :: CKP_EMSGSIZE = 90    ! size mismatch
  integer, parameter, public :: CKP_EBADF = 9        ! file closed
  integer, parameter, public :: CKP_EWOULDBLOCK = 11 ! another writer holds the file
  integer, parameter, public :: CKP_EIO = 5          ! corrupt data (or an I/O error)
  integer, parameter, public :: CKP_EFBIG = 27       ! data file at its maximum size
  integer, parameter, public :: CKP_EREMOTEIO = 121  ! the remote tier failed
  integer, parameter, public :: CKP_ERESTART = 85    ! the job went on without this rank

  interface
    function c_ckpOpen(pathname, options, file) bind(c, name='ckpOpen') result(st)
      import :: c_char, c_ptr, c_int
      character(kind=c_char), dimension(*), intent(in) :: pathname
      character(kind=c_char), dimension(*), intent(in) :: options
      type(c_ptr), intent(out) :: file
      integer(c_int) :: st
    end function
    function c_ckpClose(file) bind(c, name='ckpClose') result(st)
      import :: c_ptr, c_int
      type(c_ptr), value :: file
      integer(c_int) :: st
    end function
    function c_ckpLocate(file, name) bind(c, name='ckpLocate') result(ckpt)
      import :: c_char, c_ptr
      type(c_ptr), value :: file
      character(kind=c_char), dimension(*), intent(in) :: name
      type(c_ptr) :: ckpt
    end function
    function c_ckpRegister(file, name, address, size, ckpt) bind(c, name='ckpRegister') result(st)
      import :: c_char, c_ptr, c_size_t, c_int
      type(c_ptr), value :: file
      character(kind=c_char), dimension(*), intent(in) :: name
      type(c_ptr), value :: address
      integer(c_size_t), value :: size
      type(c_ptr), intent(out) :: ckpt
      integer(c_int) :: st
    end function
    function c_ckpUnregister(ckpt) bind(c, name='ckpUnregister') result(st)
      import :: c_ptr, c_int
      type(c_ptr), value :: ckpt
      integer(c_int) :: st
    end function
    function c_ckpSave(ckpt) bind(c, name='ckpSave') result(st)
      import :: c_ptr, c_int
      type(c_ptr), value :: ckpt
      integer(c_int) :: st
    end function
    function c_ckpSaveAll(file) bind(c, name='ckpSaveAll') result(st)
      import :: c_ptr, c_int
      type(c_ptr), value :: file
      integer(c_int) :: st
    end function
    function c_ckpRestore(ckpt, version) bind(c, name='ckpRestore') result(st)
      import :: c_ptr, c_int
      type(c_ptr), value :: ckpt
      integer(c_int), value :: version
      integer(c_int) :: st
    end function
    function c_ckpRestoreAll(file, version) bind(c, name='ckpRestoreAll') result(st)
      import :: c_ptr, c_int
      type(c_ptr), value :: file
      integer(c_int), value :: version
      integer(c_int) :: st
    end function
    function c_ckpSync(file) bind(c, name='ckpSync') result(st)
      import :: c_ptr, c_int
      type(c_ptr), value :: file
      integer(c_int) :: st
    end function
    function c_ckpNewest(ckpt, version) bind(c, name='ckpNewest') result(st)
      import :: c_ptr, c_int
      type(c_ptr), value :: ckpt
      integer(c_int), intent(out) :: version
      integer(c_int) :: st
    end function
    function c_ckpVersions(ckpt, versions, capacity, count) bind(c, name='ckpVersions') result(st)
      import :: c_ptr, c_int
      type(c_ptr), value :: ckpt
      integer(c_int), dimension(*), intent(out) :: versions
      integer(c_int), value :: capacity
      integer(c_int), intent(out) :: count
      integer(c_int) :: st
    end function
    function c_ckpFlush(file) bind(c, name='ckpFlush') result(st)
      import :: c_ptr, c_int
      type(c_ptr), value :: file
      integer(c_int) :: st
    end function
    function c_ckpJobVersion(file, version) bind(c, name='ckpJobVersion') result(st)
      import :: c_ptr, c_int
      type(c_ptr), value :: file
      integer(c_int), intent(out) :: version
      integer(c_int) :: st
    end function
    function c_ckpJobLife(file, life, version) bind(c, name='ckpJobLife') result(st)
      import :: c_ptr, c_int
      type(c_ptr), value :: file
      integer(c_int), intent(out) :: life, version
      integer(c_int) :: st
    end function
    function c_ckpRestoreJob(file, version) bind(c, name='ckpRestoreJob') result(st)
      import :: c_ptr, c_int
      type(c_ptr), value :: file
      integer(c_int), intent(out) :: version
      integer(c_int) :: st
    end function
    function c_ckpStrerror(status) bind(c, name='ckpStrerror') result(msg)
      import :: c_ptr, c_int
      integer(c_int), value :: status
      type(c_ptr) :: msg
    end function
    function c_ckpLastError() bind(c, name='ckpLastError') result(msg)
      import :: c_ptr
      type(c_ptr) :: msg
    end function
    function c_strlen(s) bind(c, name='strlen') result(n)
      import :: c_ptr, c_size_t
      type(c_ptr), value :: s
      integer(c_size_t) :: n
    end function
  end interface

contains

  ! cstr returns s without trailing blanks, NUL-terminated.
  pure function cstr(s) result(c)
    character(len=*), intent(in) :: s
    character(kind=c_char, len=len_trim(s) + 1) :: c
    c = trim(s) // c_null_char
  end function

  ! fstr copies a NUL-terminated C string into a Fortran string.
  function fstr(p) result(s)
    type(c_ptr), intent(in) :: p
    character(len=:), allocatable :: s
    character(kind=c_char), pointer :: chars(:)
    integer :: i, n
    if (.not. c_associated(p)) then
      s = ''
      return
    end if
    n = int(c_strlen(p))
    call c_f_pointer(p, chars, [n])
    allocate(character(len=n) :: s)
    do i = 1, n
      s(i:i) = chars(i)
    end do
  end function

  ! ckpOpen opens (or creates) the checkpoint file at pathname. options, if present,
  ! is the options string of ckp_util.h ('sync=every:10 keep=3').
  integer function ckpOpen(pathname, options, file) result(st)
    character(len=*), intent(in) :: pathname
    character(len=*), intent(in), optional :: options
    type(c_ptr), intent(out) :: file
    if (present(options)) then
      st = c_ckpOpen(cstr(pathname), cstr(options), file)
    else
      st = c_ckpOpen(cstr(pathname), cstr(''), file)
    end if
  end function

  ! ckpClose makes every saved version durable, unregisters everything and closes.
  integer function ckpClose(file) result(st)
    type(c_ptr), intent(in) :: file
    st = c_ckpClose(file)
  end function

  ! ckpLocate returns the checkpoint registered under name, or C_NULL_PTR.
  function ckpLocate(file, name) result(ckpt)
    type(c_ptr), intent(in) :: file
    character(len=*), intent(in) :: name
    type(c_ptr) :: ckpt
    ckpt = c_ckpLocate(file, cstr(name))
  end function

  ! ckpRegister registers size bytes at address (C_LOC and C_SIZEOF of a TARGET,
  ! contiguous array) under name.
  integer function ckpRegister(file, name, address, size, ckpt) result(st)
    type(c_ptr), intent(in) :: file
    character(len=*), intent(in) :: name
    type(c_ptr), intent(in) :: address
    integer(c_size_t), intent(in) :: size
    type(c_ptr), intent(out) :: ckpt
    st = c_ckpRegister(file, cstr(name), address, size, ckpt)
  end function

  ! ckpUnregister removes the checkpoint; its versions stay in the file.
  integer function ckpUnregister(ckpt) result(st)
    type(c_ptr), intent(in) :: ckpt
    st = c_ckpUnregister(ckpt)
  end function

  ! ckpSave saves the region as a new version.
  integer function ckpSave(ckpt) result(st)
    type(c_ptr), intent(in) :: ckpt
    st = c_ckpSave(ckpt)
  end function

  ! ckpSaveAll saves every registered region, atomically.
  integer function ckpSaveAll(file) result(st)
    type(c_ptr), intent(in) :: file
    st = c_ckpSaveAll(file)
  end function

  ! ckpRestore restores version (1..N absolute; 0, -1, ... relative) into the region.
  integer function ckpRestore(ckpt, version) result(st)
    type(c_ptr), intent(in) :: ckpt
    integer, intent(in) :: version
    st = c_ckpRestore(ckpt, int(version, c_int))
  end function

  ! ckpRestoreAll restores the same version of every registered region.
  integer function ckpRestoreAll(file, version) result(st)
    type(c_ptr), intent(in) :: file
    integer, intent(in) :: version
    st = c_ckpRestoreAll(file, int(version, c_int))
  end function

  ! ckpSync makes every version saved so far durable.
  integer function ckpSync(file) result(st)
    type(c_ptr), intent(in) :: file
    st = c_ckpSync(file)
  end function

  ! ckpNewest sets version to the newest kept version number, 0 if none.
  integer function ckpNewest(ckpt, version) result(st)
    type(c_ptr), intent(in) :: ckpt
    integer, intent(out) :: version
    integer(c_int) :: v
    st = c_ckpNewest(ckpt, v)
    version = int(v)
  end function

  ! ckpVersions sets count to the number of kept versions and fills versions with the
  ! first min(count, size(versions)) of them, oldest first.
  integer function ckpVersions(ckpt, versions, count) result(st)
    type(c_ptr), intent(in) :: ckpt
    integer, dimension(:), intent(out) :: versions
    integer, intent(out) :: count
    integer(c_int) :: buf(max(1, size(versions))), n
    st = c_ckpVersions(ckpt, buf, int(size(versions), c_int), n)
    count = int(n)
    versions(1:min(count, size(versions))) = int(buf(1:min(count, size(versions))))
  end function

  ! ckpFlush waits until everything saved so far is committed in the remote store
  ! (returns CKP_OK at once without a remote tier).
  integer function ckpFlush(file) result(st)
    type(c_ptr), intent(in) :: file
    st = c_ckpFlush(file)
  end function

  ! ckpJobVersion sets version to the newest version every rank of the job committed
  ! in the remote store, 0 if none.
  integer function ckpJobVersion(file, version) result(st)
    type(c_ptr), intent(in) :: file
    integer, intent(out) :: version
    integer(c_int) :: v
    st = c_ckpJobVersion(file, v)
    version = int(v)
  end function

  ! ckpJobLife sets life to the number of the job's newest life (0 if none) and version
  ! to its restart point, the job version.
  integer function ckpJobLife(file, life, version) result(st)
    type(c_ptr), intent(in) :: file
    integer, intent(out) :: life, version
    integer(c_int) :: l, v
    st = c_ckpJobLife(file, l, v)
    life = int(l)
    version = int(v)
  end function

  ! ckpRestoreJob joins the job's current life, restores every registered region at
  ! the job version and rewinds to it (or starts the job over when there is none);
  ! version, if present, is set to the version restored, 0 when starting over. Call
  ! it on every rank before the first save, and again after CKP_ERESTART.
  integer function ckpRestoreJob(file, version) result(st)
    type(c_ptr), intent(in) :: file
    integer, intent(out), optional :: version
    integer(c_int) :: v
    st = c_ckpRestoreJob(file, v)
    if (present(version)) version = int(v)
  end function

  ! ckpStrerror describes a status code.
  function ckpStrerror(status) result(msg)
    integer, intent(in) :: status
    character(len=:), allocatable :: msg
    msg = fstr(c_ckpStrerror(int(status, c_int)))
  end function

  ! ckpLastError is the full message of this thread's last failed call ('' if none).
  function ckpLastError() result(msg)
    character(len=:), allocatable :: msg
    msg = fstr(c_ckpLastError())
  end function

end module ckp_util
