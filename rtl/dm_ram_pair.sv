// Two banks of the delta buffer in one memory (docs/rtl.md, "Resources"): bank lo at
// addresses [0, 2^AW), bank hi at [2^AW, 2^(AW+1)). Port A writes either bank or reads
// bank lo; port B reads bank hi at the same read address. Written in the form of one
// true dual-port UltraRAM (4096 x 72), which yosys 0.23 (memory_libmap) maps to one
// URAM288 (checked, `make rtl-synth`; Vivado's inference is untested here, no Vivado):
// port A no-change (its read data holds while it writes), port B seeing port A's write on
// an address collision (the URAM's cross-port rule). The top never reads while it writes
// (the encoder fills the buffer before the act pass reads it) and never writes both banks
// in one cycle (a beat's B tokens fall in one half of the T banks when B <= T/2).
`default_nettype none
module dm_ram_pair #(
  parameter int WIDTH = 72,
  parameter int DEPTH = 16,
  parameter int AW = (DEPTH > 1) ? $clog2(DEPTH) : 1
) (
  input  wire              clk,
  input  wire              we_lo,
  input  wire              we_hi,
  input  wire  [AW-1:0]    waddr,
  input  wire  [WIDTH-1:0] wdata_lo,
  input  wire  [WIDTH-1:0] wdata_hi,
  input  wire  [AW-1:0]    raddr,
  output logic [WIDTH-1:0] rdata_lo,
  output logic [WIDTH-1:0] rdata_hi
);
  (* ram_style = "ultra" *) logic [WIDTH-1:0] mem [2 << AW];
  wire             we = we_lo || we_hi;
  wire [AW:0]      addr_a = we ? {we_hi, waddr} : {1'b0, raddr};
  wire [AW:0]      addr_b = {1'b1, raddr};
  wire [WIDTH-1:0] wd = we_hi ? wdata_hi : wdata_lo;

  always_ff @(posedge clk) begin
    if (we) mem[addr_a] <= wd;
    else rdata_lo <= mem[addr_a];
  end
  always_ff @(posedge clk) rdata_hi <= (we && addr_a == addr_b) ? wd : mem[addr_b];
endmodule
`default_nettype wire
