# frugal_fixed_point(<var> <text> <digits>): a plain decimal ("12.345") as a whole number of
# 10^-digits ("12.345" with 3 digits -> 12345; further digits are cut), for math(EXPR), which
# has 64-bit integers only. Sets <var> to "" when <text> is not a plain decimal (no sign, no
# exponent): the caller says what it was reading. Used by the examples' ctest scripts.
function(frugal_fixed_point var text digits)
  if(NOT text MATCHES "^([0-9]+)(\\.([0-9]*))?$")
    set(${var} "" PARENT_SCOPE)
    return()
  endif()
  set(whole "${CMAKE_MATCH_1}")
  string(REPEAT "0" ${digits} zeros)
  set(frac "${CMAKE_MATCH_3}${zeros}")
  string(SUBSTRING "${frac}" 0 ${digits} frac)
  # "1${frac}" - 1${zeros}: leading zeros of the fraction are not read as octal or dropped.
  math(EXPR value "${whole} * 1${zeros} + 1${frac} - 1${zeros}")
  set(${var} "${value}" PARENT_SCOPE)
endfunction()
