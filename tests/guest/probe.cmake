# The probe guest and the crash guests: freestanding x86-64 ELFs built with
# the host C compiler through custom commands, so that no global compile or
# link option (sanitizers, hardening, PIE) can reach them.
#
#   build/probe.elf         the probe (Linux 64-bit ELF entry + PVH note)
#   build/probe.bzimage     the same code as a bzImage (64-bit entry only)
#   build/probe.bin         a copy of probe.bzimage
#   build/crash-triple.elf  prints a line, then triple-faults
#   build/crash-emul.elf    prints a line, then executes an SSE instruction
#
# See tests/guest/README.md.

set(PROBE_SRC ${CMAKE_CURRENT_SOURCE_DIR})
set(PROBE_OBJ ${CMAKE_CURRENT_BINARY_DIR}/obj)
file(MAKE_DIRECTORY ${PROBE_OBJ})
if(CMAKE_OBJCOPY)
  set(PROBE_OBJCOPY ${CMAKE_OBJCOPY})
else()
  set(PROBE_OBJCOPY objcopy)
endif()

# -nostdinc keeps host libc headers out; the compiler's own freestanding
# headers (stdint.h, stdarg.h, ...) come from its include directory.
execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=include
                OUTPUT_VARIABLE PROBE_CC_INC OUTPUT_STRIP_TRAILING_WHITESPACE)
set(PROBE_CFLAGS
  -std=gnu11 -O2 -g -Wall -Wextra -Werror
  -ffreestanding -fno-builtin -nostdinc -isystem ${PROBE_CC_INC}
  -fno-pic -fno-pie -mcmodel=small -mno-red-zone -mgeneral-regs-only
  -fno-stack-protector -fno-stack-clash-protection -fcf-protection=none
  -fno-asynchronous-unwind-tables -fno-unwind-tables
  -fno-tree-loop-distribute-patterns -fno-strict-aliasing
  -ffunction-sections -fdata-sections)

set(PROBE_LDFLAGS
  -nostdlib -static -no-pie -Wl,--no-dynamic-linker -Wl,--build-id=none
  -Wl,-z,max-page-size=4096 -Wl,-z,noexecstack -Wl,--no-warn-rwx-segments -Wl,--gc-sections
  -Wl,-T,${PROBE_SRC}/probe.ld)

file(GLOB PROBE_HDRS CONFIGURE_DEPENDS ${PROBE_SRC}/*.h)

# probe_object(<source file name> <output variable>)
function(probe_object src var)
  set(obj ${PROBE_OBJ}/${src}.o)
  add_custom_command(OUTPUT ${obj}
    COMMAND ${CMAKE_C_COMPILER} ${PROBE_CFLAGS} -c ${PROBE_SRC}/${src} -o ${obj}
    DEPENDS ${PROBE_SRC}/${src} ${PROBE_HDRS}
    COMMENT "Building guest object ${src}"
    VERBATIM)
  set(${var} ${obj} PARENT_SCOPE)
endfunction()

set(PROBE_COMMON)
foreach(src head.S boot.c lib.c acpi.c irq.c vq.c)
  probe_object(${src} o)
  list(APPEND PROBE_COMMON ${o})
endforeach()
foreach(src virtio.c blk.c vsock.c probe.c crash_triple.c crash_emul.c bzsetup.S)
  string(REGEX REPLACE "\\..*$" "" n ${src})
  probe_object(${src} PROBE_O_${n})
endforeach()

# probe_link(<output ELF> <objects...>)
function(probe_link out)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_C_COMPILER} ${PROBE_CFLAGS} ${PROBE_LDFLAGS} ${ARGN} -o ${out}
    DEPENDS ${ARGN} ${PROBE_SRC}/probe.ld
    COMMENT "Linking guest ${out}"
    VERBATIM)
endfunction()

set(PROBE_ELF ${CMAKE_BINARY_DIR}/probe.elf)
set(PROBE_BZ_ELF ${CMAKE_CURRENT_BINARY_DIR}/probe-bz.elf)
set(PROBE_BZIMAGE ${CMAKE_BINARY_DIR}/probe.bzimage)
set(PROBE_BIN ${CMAKE_BINARY_DIR}/probe.bin)
set(CRASH_TRIPLE ${CMAKE_BINARY_DIR}/crash-triple.elf)
set(CRASH_EMUL ${CMAKE_BINARY_DIR}/crash-emul.elf)

probe_link(${PROBE_ELF} ${PROBE_COMMON} ${PROBE_O_virtio} ${PROBE_O_blk}
           ${PROBE_O_vsock} ${PROBE_O_probe})
probe_link(${PROBE_BZ_ELF} ${PROBE_O_bzsetup} ${PROBE_COMMON} ${PROBE_O_virtio}
           ${PROBE_O_blk} ${PROBE_O_vsock} ${PROBE_O_probe})
probe_link(${CRASH_TRIPLE} ${PROBE_COMMON} ${PROBE_O_crash_triple})
probe_link(${CRASH_EMUL} ${PROBE_COMMON} ${PROBE_O_crash_emul})

# bzImage = 1 KiB setup (.bzsetup, linked right below 16 MiB) followed by
# the protected-mode part: the flat image from the linker's layout.
add_custom_command(OUTPUT ${PROBE_BZIMAGE} ${PROBE_BIN}
  COMMAND ${PROBE_OBJCOPY} -O binary -j .bzsetup -j .head.text -j .text
          -j .rodata -j .note.Xen -j .data ${PROBE_BZ_ELF} ${PROBE_BZIMAGE}
  COMMAND ${CMAKE_COMMAND} -E copy ${PROBE_BZIMAGE} ${PROBE_BIN}
  DEPENDS ${PROBE_BZ_ELF}
  COMMENT "Making guest bzImage ${PROBE_BZIMAGE}"
  VERBATIM)

# bzshim.elf: a PVH ELF at 32 MiB that boots the embedded probe.bzimage the
# way a Linux boot loader would (tests/e2e/probe_qemu.sh).
set(BZSHIM ${CMAKE_CURRENT_BINARY_DIR}/bzshim.elf)
probe_object(bzshim.c PROBE_O_bzshim)
set(BZSHIM_PAYLOAD_O ${PROBE_OBJ}/bzshim_payload.S.o)
add_custom_command(OUTPUT ${BZSHIM_PAYLOAD_O}
  COMMAND ${CMAKE_C_COMPILER} ${PROBE_CFLAGS} -DBZIMAGE_PATH="${PROBE_BZIMAGE}"
          -c ${PROBE_SRC}/bzshim_payload.S -o ${BZSHIM_PAYLOAD_O}
  DEPENDS ${PROBE_SRC}/bzshim_payload.S ${PROBE_BZIMAGE}
  COMMENT "Building guest object bzshim_payload.S"
  VERBATIM)
add_custom_command(OUTPUT ${BZSHIM}
  COMMAND ${CMAKE_C_COMPILER} ${PROBE_CFLAGS}
          -Wl,--defsym=probe_base=0x2000000 ${PROBE_LDFLAGS} ${PROBE_COMMON} ${PROBE_O_bzshim}
          ${BZSHIM_PAYLOAD_O} -o ${BZSHIM}
  DEPENDS ${PROBE_COMMON} ${PROBE_O_bzshim} ${BZSHIM_PAYLOAD_O}
          ${PROBE_SRC}/probe.ld
  COMMENT "Linking guest ${BZSHIM}"
  VERBATIM)

add_custom_target(probe-guest ALL
  DEPENDS ${PROBE_ELF} ${PROBE_BZIMAGE} ${PROBE_BIN} ${CRASH_TRIPLE}
          ${CRASH_EMUL} ${BZSHIM})
