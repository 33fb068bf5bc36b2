// Barrel rotation of N elements: out[b] = in[(b - s) mod N]; log2(N) mux stages instead
// of N N:1 muxes. Used to bring bank-ordered operands onto the lanes of the skewed
// reuse buffer (see docs/rtl.md, "bank skew").
`default_nettype none
module dm_rotate #(
  parameter int N = 8,   // power of two
  parameter int W = 8,
  parameter int SB = (N > 1) ? $clog2(N) : 1
) (
  input  wire [N*W-1:0]  din,
  input  wire [SB-1:0]   s,
  output logic [N*W-1:0] dout
);
  logic [N*W-1:0] stage [SB+1];

  assign stage[0] = din;
  for (genvar k = 0; k < SB; k++) begin : g_stage
    for (genvar b = 0; b < N; b++) begin : g_elem
      localparam int SRC = (b - (1 << k) + N) % N;
      assign stage[k+1][b*W +: W] = s[k] ? stage[k][SRC*W +: W] : stage[k][b*W +: W];
    end
  end
  assign dout = stage[SB];
endmodule
`default_nettype wire
