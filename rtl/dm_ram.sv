// Simple dual-port RAM: one synchronous write port, one registered read port.
// Written in the plain form yosys (memory_bram / memory_libmap) and Vivado infer as
// BRAM/URAM/LUTRAM: no reset, no byte enables, read-first.
`default_nettype none
module dm_ram #(
  parameter int WIDTH = 8,
  parameter int DEPTH = 16,
  parameter int AW = (DEPTH > 1) ? $clog2(DEPTH) : 1
) (
  input  wire              clk,
  input  wire              we,
  input  wire [AW-1:0]     waddr,
  input  wire [WIDTH-1:0]  wdata,
  input  wire [AW-1:0]     raddr,
  output logic [WIDTH-1:0] rdata
);
  logic [WIDTH-1:0] mem [DEPTH];

  always_ff @(posedge clk) begin
    if (we) mem[waddr] <= wdata;
    rdata <= mem[raddr];
  end
endmodule
`default_nettype wire
