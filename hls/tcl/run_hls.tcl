# Vitis HLS flow for one kernel of the deltamtl accelerator.
#
#   vitis_hls -f hls/tcl/run_hls.tcl -tclargs <fetch|core|commit> [steps] [vectors]
#
#   steps    comma-separated subset of csim,csynth,cosim,export (default csim,csynth,export)
#   vectors  csim/cosim input: core reads a .dmtv file (tb_core), fetch and commit read a
#            .dmtd file of DDR images (tb_system); default build/hls/csim.dmtv|.dmtd, which
#            `make csim` writes. For cosim use a file without resets after its start:
#            the testbench's reset hook clears the C model only, not the RTL's state
#            (tests/hls/test_hls_vitis.py truncates its vectors accordingly).
# The compiled maxima: hls/generated/params.h, or the params.h in $DMTL_PARAMS_DIR when set
# (`make hls HLS_LIMITS=board` writes build/hls_params/board/params.h and the matching
# vectors; `deltamtl hls params --limits board --out DIR/params.h`).
# Run from the repository root (make hls does). Project under build/hls_prj/<kernel>,
# reports under build/hls_prj/<kernel>/sol/syn/report, IP exported to build/ip/<kernel>.
# Part of the ZCU104 (from platform.tcl), 3.33 ns clock (300 MHz), flow target vivado:
# fetch and commit get ap_ctrl_hs (PYNQ polls start/done), core is ap_ctrl_none.

if {[llength $argv] < 1} {
    puts stderr "usage: vitis_hls -f hls/tcl/run_hls.tcl -tclargs <fetch|core|commit> \[steps\] \[vectors\]"
    exit 2
}
set kernel [lindex $argv 0]
set steps [split [expr {[llength $argv] > 1 ? [lindex $argv 1] : "csim,csynth,export"}] ","]
if {[lsearch -exact {fetch core commit} $kernel] < 0} {
    puts stderr "run_hls.tcl: unknown kernel '$kernel' (fetch, core or commit)"
    exit 2
}
foreach s $steps {
    if {[lsearch -exact {csim csynth cosim export} $s] < 0} {
        puts stderr "run_hls.tcl: unknown step '$s' (csim, csynth, cosim, export)"
        exit 2
    }
}
set root [pwd]
if {![file exists $root/hls/core.cpp]} {
    puts stderr "run_hls.tcl: run from the repository root (no hls/core.cpp under [pwd])"
    exit 2
}
if {$kernel eq "core"} {
    set tb hls/tb/tb_core.cpp
    set default_vectors build/hls/csim.dmtv
} else {
    set tb hls/tb/tb_system.cpp
    set default_vectors build/hls/csim.dmtd
}
set vectors [expr {[llength $argv] > 2 ? [lindex $argv 2] : $default_vectors}]
set vectors [file normalize $vectors]
if {([lsearch $steps csim] >= 0 || [lsearch $steps cosim] >= 0) && ![file exists $vectors]} {
    puts stderr "run_hls.tcl: $vectors missing: run `make csim` first (it writes the vectors)"
    exit 2
}

# Part and the exported IP's VLNV come from the one platform definition (contract/platform.py,
# generated into scripts/vivado/generated/platform.tcl; docs/board.md).
source $root/scripts/vivado/generated/platform.tcl

# Vitis HLS brings its own ap_int.h / hls_stream.h; only the project's headers are added.
# A params.h in DMTL_PARAMS_DIR comes first on the include path (dmtl_types.h's "params.h").
set params_dir ""
if {[info exists ::env(DMTL_PARAMS_DIR)] && $::env(DMTL_PARAMS_DIR) ne ""} {
    set params_dir [file normalize $::env(DMTL_PARAMS_DIR)]
    if {![file exists $params_dir/params.h]} {
        puts stderr "run_hls.tcl: DMTL_PARAMS_DIR=$params_dir has no params.h"
        exit 2
    }
    puts "run_hls.tcl: compiled maxima from $params_dir/params.h"
}
set cflags "-std=c++14 [expr {$params_dir ne "" ? "-I$params_dir " : ""}]-I$root/hls/include -I$root/hls/generated"
open_project -reset $root/build/hls_prj/$kernel
set_top $kernel
# The top kernel is synthesised; the testbench runs the other two as C (system bench).
foreach src {fetch core commit} {
    if {$src eq $kernel} {
        add_files $root/hls/$src.cpp -cflags $cflags
    } elseif {$kernel ne "core"} {
        add_files -tb $root/hls/$src.cpp -cflags "$cflags -Wno-unknown-pragmas"
    }
}
add_files -tb $root/$tb -cflags "$cflags -Wno-unknown-pragmas -DDMTL_COSIM"

open_solution -reset sol -flow_target vivado
set_part $dmtl(part)
create_clock -period 3.33 -name default
config_interface -m_axi_addr64=true
# Active-low ap_rst_n on every kernel (the SystemVerilog core has the same port). "control"
# resets the control FSMs only: the state arrays get no reset walker or write-port mux
# (core.cpp also says RESET off per array); core.cpp asks a reset for its two valid flags
# alone, so a reset core answers NO_STATE exactly like GoldenCore.reset() (docs/hls.md).
config_rtl -reset control -reset_level low

if {[lsearch $steps csim] >= 0} {
    csim_design -argv $vectors
}
if {[lsearch $steps csynth] >= 0 || [lsearch $steps cosim] >= 0 || [lsearch $steps export] >= 0} {
    csynth_design
}
if {[lsearch $steps cosim] >= 0} {
    cosim_design -rtl verilog -argv $vectors -trace_level none
}
if {[lsearch $steps export] >= 0} {
    file mkdir $root/build/ip/$kernel
    export_design -format ip_catalog -rtl verilog -vendor $dmtl(hls_vendor) \
        -library $dmtl(hls_library) -version $dmtl(hls_version) -output $root/build/ip/$kernel
}
exit 0
