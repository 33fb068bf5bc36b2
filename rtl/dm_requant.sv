// Requantiser, two pipeline stages: y = clamp((acc*mult + 2^(shift-1)) >>> shift, -128, 127)
// (deltamtl.contract.requantize). mult < 2^16 unsigned, 1 <= shift <= 46, so the 48-bit
// product plus the rounding constant stays inside 49 signed bits.
`default_nettype none
module dm_requant (
  input  wire               clk,
  input  wire  signed [31:0] acc,
  input  wire        [15:0] mult,
  input  wire        [5:0]  shift,
  output logic signed [7:0] y
);
  logic signed [48:0] prod;
  logic [5:0] shift_q;
  logic signed [48:0] rounded;
  logic signed [48:0] shifted;

  always_ff @(posedge clk) begin
    prod <= 49'(acc) * $signed({33'b0, mult});
    shift_q <= shift;
  end
  assign rounded = prod + ((shift_q == 6'd0) ? 49'sd0 : (49'sd1 <<< (shift_q - 6'd1)));
  assign shifted = rounded >>> shift_q;
  always_ff @(posedge clk) begin
    if (shifted > 49'sd127) y <= 8'sd127;
    else if (shifted < -49'sd128) y <= -8'sd128;
    else y <= shifted[7:0];
  end
endmodule
`default_nettype wire
