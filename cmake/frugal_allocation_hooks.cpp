// The one translation unit of the CMake target frugal::allocation_hooks: linking the target
// replaces the program's malloc family and operator new/delete with frugal's counting hooks.
#include <frugal/allocation_hooks.hpp>
