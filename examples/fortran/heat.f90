! heat: the 2-D heat equation on a square plate (explicit finite differences), in
! Fortran, checkpointed with ckp through the ckp_util module. Killed at any moment
! (kill -9 included) and started again with the same arguments, it resumes from the
! newest checkpoint and finishes with exactly the answer of an uninterrupted run.
!
!   heat CKPT N STEPS EVERY OUT
!
! CKPT is the checkpoint file, N the grid points per side, STEPS the time steps in all,
! EVERY the steps between checkpoints; the final grid is written to OUT (raw doubles).
! The grid and the step counter are saved together with ckpSaveAll, so a restart
! never sees a grid from one step with the counter of another.
program heat
  use, intrinsic :: iso_c_binding
  use ckp_util
  use, intrinsic :: iso_fortran_env, only: output_unit, error_unit, int64
  implicit none

  ! The solver's position, saved with the grid (a C-interoperable, pointer-free type).
  type, bind(c) :: progress_t
    integer(c_int64_t) :: step
    integer(c_int64_t) :: n
    real(c_double) :: alpha
  end type

  real(c_double), allocatable, target :: grid(:, :)
  real(c_double), allocatable :: next(:, :)
  type(progress_t), target :: p
  type(c_ptr) :: file, cgrid, cprog
  character(len=4096) :: ckpt, out, arg
  integer :: n, every, newest, i, j, u
  integer(int64) :: steps

  if (command_argument_count() /= 5) then
    write (error_unit, '(a)') 'usage: heat CKPT N STEPS EVERY OUT'
    stop 2
  end if
  call get_command_argument(1, ckpt)
  call get_command_argument(2, arg)
  read (arg, *) n
  call get_command_argument(3, arg)
  read (arg, *) steps
  call get_command_argument(4, arg)
  read (arg, *) every
  call get_command_argument(5, out)

  allocate (grid(n, n), next(n, n))
  p = progress_t(0, n, 0.2d0)

  call check(ckpOpen(trim(ckpt), 'keep=3', file), 'open')
  ! The regions: whole TARGET arrays (contiguous), given by address and size.
  call check(ckpRegister(file, 'grid', c_loc(grid), size(grid, kind=c_size_t) * c_sizeof(grid(1, 1)), cgrid), &
             'register grid')
  call check(ckpRegister(file, 'progress', c_loc(p), c_sizeof(p), cprog), 'register progress')

  call check(ckpNewest(cprog, newest), 'newest')
  if (newest > 0) then
    call check(ckpRestoreAll(file, 0), 'restore')
    if (p%n /= n) then
      write (error_unit, '(a,i0,a,i0)') 'heat: checkpoint is for n=', p%n, ', not ', n
      stop 1
    end if
    write (output_unit, '(a,i0)') 'resumed at step ', p%step
    flush (output_unit)
  else
    ! A hot square in the middle of a cold plate with a warm left edge.
    grid = 0
    do j = 1, n
      do i = 1, n
        if (j == 1) then
          grid(i, j) = 50
        else if (i - 1 > n / 3 .and. i - 1 < 2 * n / 3 .and. j - 1 > n / 3 .and. j - 1 < 2 * n / 3) then
          grid(i, j) = 100
        end if
      end do
    end do
  end if

  do while (p%step < steps)
    ! One explicit step: interior points move towards the mean of their neighbours.
    next = grid
    do j = 2, n - 1
      do i = 2, n - 1
        next(i, j) = grid(i, j) + p%alpha * (grid(i - 1, j) + grid(i + 1, j) + grid(i, j - 1) &
                     + grid(i, j + 1) - 4 * grid(i, j))
      end do
    end do
    grid = next ! grid is the registered region: assign, never reallocate
    p%step = p%step + 1
    if (mod(p%step, int(every, int64)) == 0 .or. p%step == steps) then
      call check(ckpSaveAll(file), 'save')
      write (output_unit, '(a,i0)') 'checkpoint at step ', p%step
      flush (output_unit)
    end if
  end do

  open (newunit=u, file=trim(out), access='stream', form='unformatted', status='replace')
  write (u) grid
  close (u)
  write (output_unit, '(a,i0,a,es24.16)') 'done: step ', p%step, ', sum ', sum(grid)
  call check(ckpClose(file), 'close')

contains

  subroutine check(st, what)
    integer, intent(in) :: st
    character(len=*), intent(in) :: what
    if (st /= CKP_OK) then
      write (error_unit, '(a,a,a,a)') 'heat: ', what, ': ', ckpLastError()
      stop 1
    end if
  end subroutine

end program heat
