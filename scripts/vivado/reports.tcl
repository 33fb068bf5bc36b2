# Reports of an implemented design (docs/board.md, "Reading the reports").
#
#   dmtl_reports <out_dir> <name>  ->  dict with wns, tns, whs, ths (ns)
#
# Writes <name>_utilization.rpt (hierarchical too), <name>_timing_summary.rpt and
# <name>_timing_paths.rpt (the 10 worst setup paths) into out_dir. Needs the implemented
# run open (open_run impl_1).

proc dmtl_worst_slack {kind} {
    # The worst path of one analysis (setup: -max, hold: -min); no path: no constraint.
    set path [get_timing_paths -delay_type $kind -max_paths 1 -nworst 1]
    if {$path eq ""} {
        return 0.0
    }
    return [get_property SLACK $path]
}

proc dmtl_reports {out_dir name} {
    file mkdir $out_dir
    report_utilization -file [file join $out_dir ${name}_utilization.rpt]
    report_utilization -hierarchical -file [file join $out_dir ${name}_utilization_hier.rpt]
    report_timing_summary -max_paths 10 -report_unconstrained \
        -file [file join $out_dir ${name}_timing_summary.rpt]
    report_timing -delay_type max -max_paths 10 -sort_by slack \
        -file [file join $out_dir ${name}_timing_paths.rpt]
    # Setup: worst negative slack; hold: worst hold slack. TNS/THS come from the run.
    set run [get_runs impl_1]
    return [dict create \
        wns [dmtl_worst_slack max] \
        whs [dmtl_worst_slack min] \
        tns [get_property STATS.TNS $run] \
        ths [get_property STATS.THS $run]]
}

# Fail (non-zero exit from build_bitstream.tcl) when timing is not met.
proc dmtl_check_timing {slack} {
    set failures {}
    foreach key {wns whs} label {setup hold} {
        set value [dict get $slack $key]
        if {![string is double -strict $value]} {
            lappend failures "$label slack unknown ('$value')"
        } elseif {$value < 0} {
            lappend failures "$label slack [format %.3f $value] ns < 0"
        }
    }
    return $failures
}
