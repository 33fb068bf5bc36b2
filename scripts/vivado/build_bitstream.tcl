# ZCU104 bitstream of the deltamtl accelerator, Vivado batch mode (docs/board.md).
#
#   vivado -mode batch -source scripts/vivado/build_bitstream.tcl -tclargs \
#       impl=hls clock_mhz=300 out=build/vivado/hls name=deltamtl_hls \
#       ip=build/ip hls_prj=build/hls_prj jobs=2
#
# `make bitstream` runs it. Run from the repository root. Writes into out/: the project
# (out/prj), <name>.bit, <name>.hwh (PYNQ's pair, same base name), the reports and
# <name>_summary.txt. Exit status: 0 built and timing met, 3 timing not met (the
# reports and the bitstream are written, make does not copy them), 1 any other failure.

set dmtl_script_dir [file dirname [file normalize [info script]]]
source [file join $dmtl_script_dir generated platform.tcl]
source [file join $dmtl_script_dir block_design.tcl]
source [file join $dmtl_script_dir reports.tcl]

proc dmtl_args {argv} {
    global dmtl
    set opts [dict create impl hls clock_mhz $dmtl(clock_mhz_default) out build/vivado \
        name "" ip build/ip hls_prj build/hls_prj jobs 2]
    foreach arg $argv {
        set eq [string first = $arg]
        set key [string range $arg 0 [expr {$eq - 1}]]
        if {$eq < 1 || ![dict exists $opts $key]} {
            error "build_bitstream.tcl: bad argument '$arg' (keys: [dict keys $opts])"
        }
        dict set opts $key [string range $arg [expr {$eq + 1}] end]
    }
    if {[dict get $opts name] eq ""} {
        dict set opts name deltamtl_[dict get $opts impl]
    }
    if {![regexp {^[A-Za-z0-9_.-]+$} [dict get $opts name]]} {
        error "build_bitstream.tcl: name '[dict get $opts name]' must be a plain file name"
    }
    return $opts
}

# The packaged IP of one kernel: build/ip/<k> when it holds component.xml, else the
# unpacked copy Vitis HLS keeps in its solution (sol/impl/ip), else the export zip
# unpacked into out/ip_repo/<k>.
proc dmtl_ip_dir {kernel ip_root hls_root out} {
    foreach dir [list [file join $ip_root $kernel] \
                     [file join $hls_root $kernel sol impl ip]] {
        if {[file exists [file join $dir component.xml]]} {
            return [file normalize $dir]
        }
    }
    set zips [glob -nocomplain -directory [file join $ip_root $kernel] *.zip]
    if {[llength $zips] == 1} {
        set dest [file join $out ip_repo $kernel]
        file delete -force $dest
        file mkdir $dest
        exec unzip -q -o [lindex $zips 0] -d $dest
        return [file normalize $dest]
    }
    error "no exported IP for '$kernel' under $ip_root/$kernel or\
        $hls_root/$kernel/sol/impl/ip: run `make hls` (Vitis HLS) first"
}

proc dmtl_build {opts} {
    global dmtl
    set impl [dict get $opts impl]
    set clock [dict get $opts clock_mhz]
    set out [file normalize [dict get $opts out]]
    set name [dict get $opts name]
    set jobs [dict get $opts jobs]
    file mkdir $out

    create_project -force $dmtl(design) [file join $out prj] -part $dmtl(part)
    # The board part brings the PS preset (DDR4, MIO); without the board files the part
    # alone still builds a PL bitstream PYNQ can load (the PS is configured by the image).
    set boards [lsort [get_board_parts -quiet $dmtl(board_part)]]
    set board_preset [expr {[llength $boards] > 0}]
    if {$board_preset} {
        set_property board_part [lindex $boards end] [current_project]
    } else {
        puts "WARNING: no board files for $dmtl(board_part): part $dmtl(part) without the PS preset"
    }

    # HLS kernels from the `make hls` export; IMPL=rtl swaps the core for the SystemVerilog.
    set ip_dirs {}
    foreach k $dmtl(kernels) {
        if {$k eq "core" && $impl eq "rtl"} {
            continue
        }
        lappend ip_dirs [dmtl_ip_dir $k [dict get $opts ip] [dict get $opts hls_prj] $out]
    }
    set_property ip_repo_paths $ip_dirs [current_project]
    update_ip_catalog
    if {$impl eq "rtl"} {
        set sources [lmap f [concat $dmtl(core,rtl_sources) [list $dmtl(core,wrapper)]] {
            file normalize $f
        }]
        add_files -norecurse $sources
        update_compile_order -fileset sources_1
    }

    set clock_actual [dmtl_block_design $impl $clock $board_preset]
    puts "deltamtl: PL clock requested $clock MHz, PS generates $clock_actual MHz"

    set bd [get_files $dmtl(design).bd]
    generate_target all $bd
    set wrapper [make_wrapper -files $bd -top]
    add_files -norecurse $wrapper
    set_property top $dmtl(design)_wrapper [current_fileset]
    update_compile_order -fileset sources_1

    launch_runs synth_1 -jobs $jobs
    wait_on_run synth_1
    if {[get_property PROGRESS [get_runs synth_1]] ne "100%"} {
        error "synthesis failed: see [file join $out prj] (runs/synth_1/runme.log)"
    }
    launch_runs impl_1 -to_step write_bitstream -jobs $jobs
    wait_on_run impl_1
    if {[get_property PROGRESS [get_runs impl_1]] ne "100%"} {
        error "implementation failed: see [file join $out prj] (runs/impl_1/runme.log)"
    }
    open_run impl_1
    set slack [dmtl_reports $out $name]

    set run_dir [get_property DIRECTORY [get_runs impl_1]]
    file copy -force [file join $run_dir $dmtl(design)_wrapper.bit] [file join $out $name.bit]
    # the hand-off file of the block design (<prj>.gen/... since 2020.2, .srcs/... before)
    set hwh [lindex [glob -nocomplain [file join $out prj *.{gen,srcs} sources_1 bd \
        $dmtl(design) hw_handoff $dmtl(design).hwh]] 0]
    if {$hwh eq ""} {
        error "no hw_handoff/$dmtl(design).hwh under [file join $out prj]"
    }
    file copy -force $hwh [file join $out $name.hwh]

    set failures [dmtl_check_timing $slack]
    set fh [open [file join $out ${name}_summary.txt] w]
    puts $fh "name $name"
    puts $fh "impl $impl"
    puts $fh "part $dmtl(part)"
    puts $fh "board_preset $board_preset"
    puts $fh "clock_mhz_requested $clock"
    puts $fh "clock_mhz_actual $clock_actual"
    dict for {key value} $slack {
        puts $fh "$key $value"
    }
    puts $fh "timing [expr {[llength $failures] ? {FAILED} : {met}}]"
    close $fh
    return $failures
}

if {[catch {
    set failures [dmtl_build [dmtl_args $argv]]
} msg]} {
    puts stderr "build_bitstream.tcl: ERROR: $msg"
    exit 1
}
if {[llength $failures]} {
    puts stderr "build_bitstream.tcl: timing not met: [join $failures {; }]"
    exit 3
}
puts "build_bitstream.tcl: done"
exit 0
