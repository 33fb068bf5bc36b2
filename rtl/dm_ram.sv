// Simple dual-port RAM: one synchronous write port, one registered read port.
// Written in the plain form yosys (memory_libmap) and Vivado infer as BRAM/URAM/LUTRAM:
// no reset, read-first. SEGS > 1 splits the word into SEGS equal write-enable segments
// (byte enables of the primitive), so two buffers can share one word. STYLE steers the
// mapping (0 auto, 1 block RAM, 2 UltraRAM, 3 distributed; an int, as yosys 0.23 takes no
// string parameters): yosys allocates greedily per memory, not against the board's
// budget, so the top places the large buffers itself.
`default_nettype none
module dm_ram #(
  parameter int WIDTH = 8,
  parameter int DEPTH = 16,
  parameter int SEGS = 1,
  parameter int STYLE = 0,
  parameter int AW = (DEPTH > 1) ? $clog2(DEPTH) : 1
) (
  input  wire              clk,
  input  wire  [SEGS-1:0]  we,
  input  wire [AW-1:0]     waddr,
  input  wire [WIDTH-1:0]  wdata,
  input  wire [AW-1:0]     raddr,
  output logic [WIDTH-1:0] rdata
);
  localparam int SW = WIDTH / SEGS;

  initial begin
    if (SW * SEGS != WIDTH) $fatal(1, "dm_ram: WIDTH=%0d not a multiple of SEGS=%0d", WIDTH, SEGS);
  end

  if (STYLE == 2) begin : g_ultra
    (* ram_style = "ultra" *) logic [WIDTH-1:0] mem [DEPTH];
    always_ff @(posedge clk) begin
      for (int s = 0; s < SEGS; s++) if (we[s]) mem[waddr][s*SW +: SW] <= wdata[s*SW +: SW];
      rdata <= mem[raddr];
    end
  end else if (STYLE == 1) begin : g_block
    (* ram_style = "block" *) logic [WIDTH-1:0] mem [DEPTH];
    always_ff @(posedge clk) begin
      for (int s = 0; s < SEGS; s++) if (we[s]) mem[waddr][s*SW +: SW] <= wdata[s*SW +: SW];
      rdata <= mem[raddr];
    end
  end else if (STYLE == 3) begin : g_dist
    (* ram_style = "distributed" *) logic [WIDTH-1:0] mem [DEPTH];
    always_ff @(posedge clk) begin
      for (int s = 0; s < SEGS; s++) if (we[s]) mem[waddr][s*SW +: SW] <= wdata[s*SW +: SW];
      rdata <= mem[raddr];
    end
  end else begin : g_auto
    logic [WIDTH-1:0] mem [DEPTH];
    always_ff @(posedge clk) begin
      for (int s = 0; s < SEGS; s++) if (we[s]) mem[waddr][s*SW +: SW] <= wdata[s*SW +: SW];
      rdata <= mem[raddr];
    end
  end
endmodule
`default_nettype wire
