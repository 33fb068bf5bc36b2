// Two int8 multiplies that share one operand in one DSP48E2 (27x18 multiplier).
// The two weights are packed into the 27-bit port as w1*2^18 + w0; the shared operand a
// (int9: a delta in [-255, 255] or an int8 value) drives the 18-bit port. Then
//   P = w1*a*2^18 + w0*a, |w0*a| <= 128*255 < 2^17,
// so p0 = P[17:0] as a signed 18-bit value, and p1 = P[35:18] + P[17] (the sign of the low
// product borrowed one from the high field). The register is the DSP's MREG/PREG.
`default_nettype none
module dm_mac_pair (
  input  wire                clk,
  input  wire  signed [8:0]  a,
  input  wire  signed [7:0]  w0,
  input  wire  signed [7:0]  w1,
  output logic signed [17:0] p0,
  output logic signed [17:0] p1
);
  logic signed [26:0] packed_w;
  logic signed [17:0] a18;
  logic signed [44:0] prod;

  assign packed_w = $signed({w1[7], w1, 18'b0}) + 27'(w0);
  assign a18 = 18'(a);
  always_ff @(posedge clk) prod <= packed_w * a18;
  assign p0 = prod[17:0];
  assign p1 = prod[35:18] + {17'b0, prod[17]};
  // the high product's sign extension above bit 35 carries no information
  wire unused_ok = &{1'b0, prod[44:36]};
endmodule
`default_nettype wire
