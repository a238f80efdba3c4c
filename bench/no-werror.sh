#!/bin/sh
# Compiler launcher of the benchmark's build tree (bench/run.sh): the project's -Werror is for the
# CI's builds; a warning that only -O3 shows, or one in a file someone is editing, must not stop a
# measurement. Appends -Wno-error to the compiler's command line.
exec "$@" -Wno-error
