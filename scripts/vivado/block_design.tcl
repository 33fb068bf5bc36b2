# Block design of the deltamtl accelerator on the ZCU104 (docs/board.md).
#
#   source scripts/vivado/generated/platform.tcl
#   source scripts/vivado/block_design.tcl
#   dmtl_block_design <hls|rtl> <clock_mhz> <board_preset 0|1>
#
# Every instance, interface, pin, address and width comes from $dmtl(...), generated from
# contract/platform.py; this file only says how they connect. Needs an open project (and,
# for IMPL=rtl, the RTL sources added, and for the HLS kernels the IP repository set).
#
#   PS M_AXI_HPM0_FPD -> ctrl_smc -> fetch/commit s_axi_control, kernel-reset GPIO
#   fetch m_axi_gmem -> smc_fetch -> S_AXI_HP0_FPD      commit m_axi_gmem -> smc_commit -> HP1
#   fetch m_axis -> core s_axis, core m_axis -> commit s_axis        (AXI4-Stream, 64 bit)
#   pl_clk0 clocks everything; rst_periph resets the PS-side infrastructure, rst_kernels
#   (its aux reset driven by the GPIO bit) resets the kernels and their SmartConnects.

# CONFIG.<key> <value> pairs for set_property -dict from a flat key/value list.
proc dmtl_config {pairs} {
    set out {}
    foreach {key value} $pairs {
        lappend out CONFIG.$key $value
    }
    return $out
}

# The instance/pin path of a cell's pin or interface.
proc dmtl_pin {inst pin} {
    return "$inst/$pin"
}

proc dmtl_block_design {impl clock_mhz board_preset} {
    global dmtl
    if {[lsearch -exact {hls rtl} $impl] < 0} {
        error "dmtl_block_design: IMPL '$impl' is not hls or rtl"
    }
    lassign $dmtl(clock_range_mhz) lo hi
    if {![string is double -strict $clock_mhz] || $clock_mhz < $lo || $clock_mhz > $hi} {
        error "dmtl_block_design: CLOCK_MHZ '$clock_mhz' outside \[$lo, $hi\]"
    }
    create_bd_design $dmtl(design)

    # --- processing system: board preset (DDR, MIO), then our ports and the PL clock
    set ps $dmtl(ps)
    create_bd_cell -type ip -vlnv $dmtl(ps,vlnv) $ps
    if {$board_preset} {
        apply_bd_automation -rule $dmtl(ps,preset_rule) \
            -config {apply_board_preset "1"} [get_bd_cells $ps]
    }
    set_property -dict [dmtl_config [concat $dmtl(ps,config) \
        [list $dmtl(ps,clock_config) $clock_mhz]]] [get_bd_cells $ps]

    # --- resets: infrastructure, and the kernels with the host's recovery line as aux reset
    create_bd_cell -type ip -vlnv $dmtl(proc_sys_reset,vlnv) $dmtl(rst_periph)
    create_bd_cell -type ip -vlnv $dmtl(proc_sys_reset,vlnv) $dmtl(rst_kernels)
    set_property -dict [dmtl_config $dmtl(rst_kernels,config)] [get_bd_cells $dmtl(rst_kernels)]
    create_bd_cell -type ip -vlnv $dmtl(axi_gpio,vlnv) $dmtl(reset_gpio)
    set_property -dict [dmtl_config $dmtl(reset_gpio,config)] [get_bd_cells $dmtl(reset_gpio)]

    # --- kernels: HLS IP, or the SystemVerilog core as a module reference (IMPL=rtl)
    foreach k $dmtl(kernels) {
        if {$k eq "core" && $impl eq "rtl"} {
            create_bd_cell -type module -reference $dmtl(core,module) $dmtl(core,instance)
        } else {
            create_bd_cell -type ip -vlnv $dmtl($k,vlnv) $dmtl($k,instance)
        }
    }

    # --- control path: HPM0 -> SmartConnect -> every register window
    set slaves {}
    foreach k $dmtl(kernels) {
        if {$dmtl($k,control) ne ""} {
            lappend slaves [dmtl_pin $dmtl($k,instance) $dmtl($k,control)]
        }
    }
    lappend slaves [dmtl_pin $dmtl(reset_gpio) $dmtl(reset_gpio,interface)]
    create_bd_cell -type ip -vlnv $dmtl(smartconnect,vlnv) $dmtl(ctrl_smc)
    set_property -dict [dmtl_config [list NUM_SI 1 NUM_MI [llength $slaves]]] \
        [get_bd_cells $dmtl(ctrl_smc)]
    connect_bd_intf_net [get_bd_intf_pins [dmtl_pin $ps $dmtl(ps,hpm)]] \
        [get_bd_intf_pins [dmtl_pin $dmtl(ctrl_smc) [format $dmtl(smc,slave_format) 0]]]
    set i 0
    foreach s $slaves {
        connect_bd_intf_net [get_bd_intf_pins [dmtl_pin $dmtl(ctrl_smc) [format $dmtl(smc,master_format) $i]]] \
            [get_bd_intf_pins $s]
        incr i
    }

    # --- data path: each kernel's m_axi through its own SmartConnect to its HP port
    set data_smcs {}
    foreach k $dmtl(kernels) {
        if {$dmtl($k,m_axi) eq ""} {
            continue
        }
        set smc $dmtl($k,smc)
        lappend data_smcs $smc
        create_bd_cell -type ip -vlnv $dmtl(smartconnect,vlnv) $smc
        set_property -dict [dmtl_config [list NUM_SI 1 NUM_MI 1]] [get_bd_cells $smc]
        connect_bd_intf_net [get_bd_intf_pins [dmtl_pin $dmtl($k,instance) $dmtl($k,m_axi)]] \
            [get_bd_intf_pins [dmtl_pin $smc [format $dmtl(smc,slave_format) 0]]]
        connect_bd_intf_net [get_bd_intf_pins [dmtl_pin $smc [format $dmtl(smc,master_format) 0]]] \
            [get_bd_intf_pins [dmtl_pin $ps $dmtl($k,hp)]]
    }

    # --- AXI4-Stream chain fetch -> core -> commit
    foreach s $dmtl(streams) {
        lassign $s src src_intf dst dst_intf
        connect_bd_intf_net [get_bd_intf_pins [dmtl_pin $src $src_intf]] \
            [get_bd_intf_pins [dmtl_pin $dst $dst_intf]]
    }

    # --- one clock: pl_clk0 drives the PS port clocks and every PL cell
    set clk_pins [list [dmtl_pin $ps $dmtl(ps,hpm_clk)] \
        [dmtl_pin $dmtl(rst_periph) $dmtl(rst,slowest_clk)] \
        [dmtl_pin $dmtl(rst_kernels) $dmtl(rst,slowest_clk)] \
        [dmtl_pin $dmtl(ctrl_smc) $dmtl(smc,aclk)] \
        [dmtl_pin $dmtl(reset_gpio) $dmtl(gpio,clk)]]
    foreach k $dmtl(kernels) {
        lappend clk_pins [dmtl_pin $dmtl($k,instance) $dmtl(clock_pin)]
        if {$dmtl($k,m_axi) ne ""} {
            lappend clk_pins [dmtl_pin $ps $dmtl($k,hp_clk)] \
                [dmtl_pin $dmtl($k,smc) $dmtl(smc,aclk)]
        }
    }
    connect_bd_net [get_bd_pins [dmtl_pin $ps $dmtl(ps,pl_clk)]] {*}[lmap p $clk_pins {get_bd_pins $p}]

    # --- resets
    connect_bd_net [get_bd_pins [dmtl_pin $ps $dmtl(ps,pl_resetn)]] \
        [get_bd_pins [dmtl_pin $dmtl(rst_periph) $dmtl(rst,ext_in)]] \
        [get_bd_pins [dmtl_pin $dmtl(rst_kernels) $dmtl(rst,ext_in)]]
    connect_bd_net [get_bd_pins [dmtl_pin $dmtl(reset_gpio) $dmtl(reset_gpio,pin)]] \
        [get_bd_pins [dmtl_pin $dmtl(rst_kernels) $dmtl(rst,aux_in)]]
    connect_bd_net [get_bd_pins [dmtl_pin $dmtl(rst_periph) $dmtl(rst,interconnect_aresetn)]] \
        [get_bd_pins [dmtl_pin $dmtl(ctrl_smc) $dmtl(smc,aresetn)]]
    connect_bd_net [get_bd_pins [dmtl_pin $dmtl(rst_periph) $dmtl(rst,periph_aresetn)]] \
        [get_bd_pins [dmtl_pin $dmtl(reset_gpio) $dmtl(gpio,resetn)]]
    set kernel_rst {}
    foreach k $dmtl(kernels) {
        lappend kernel_rst [get_bd_pins [dmtl_pin $dmtl($k,instance) $dmtl(reset_pin)]]
    }
    connect_bd_net [get_bd_pins [dmtl_pin $dmtl(rst_kernels) $dmtl(rst,periph_aresetn)]] \
        {*}$kernel_rst
    set smc_rst {}
    foreach smc $data_smcs {
        lappend smc_rst [get_bd_pins [dmtl_pin $smc $dmtl(smc,aresetn)]]
    }
    connect_bd_net [get_bd_pins [dmtl_pin $dmtl(rst_kernels) $dmtl(rst,interconnect_aresetn)]] \
        {*}$smc_rst

    # --- address map: register windows on the HPM0 path, DDR windows for each m_axi
    set ps_space [get_bd_addr_spaces [dmtl_pin $ps $dmtl(ps,address_space)]]
    foreach k $dmtl(kernels) {
        if {$dmtl($k,control) ne ""} {
            assign_bd_address -target_address_space $ps_space \
                -offset $dmtl($k,control_base) -range $dmtl($k,control_range) \
                [get_bd_addr_segs [dmtl_pin $dmtl($k,instance) $dmtl($k,control)/$dmtl(reg_segment)]]
        }
    }
    assign_bd_address -target_address_space $ps_space \
        -offset $dmtl(reset_gpio,base) -range $dmtl(reset_gpio,range) \
        [get_bd_addr_segs [dmtl_pin $dmtl(reset_gpio) $dmtl(reset_gpio,interface)/$dmtl(reg_segment)]]
    foreach k $dmtl(kernels) {
        if {$dmtl($k,m_axi) eq ""} {
            continue
        }
        set space [get_bd_addr_spaces [dmtl_pin $dmtl($k,instance) $dmtl($k,address_space)]]
        foreach seg $dmtl($k,hp_segments) {
            lassign $seg path offset range
            assign_bd_address -target_address_space $space -offset $offset -range $range \
                [get_bd_addr_segs [dmtl_pin $ps $path]]
        }
    }

    validate_bd_design
    save_bd_design
    # what the PS really generates (IOPLL divisors): reported, and written to the summary
    return [get_property CONFIG.$dmtl(ps,clock_actual) [get_bd_cells $ps]]
}
