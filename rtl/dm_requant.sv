// Requantiser, two pipeline stages: y = clamp((acc*mult + 2^(shift-1)) >>> shift, ACT_MIN, ACT_MAX)
// (deltamtl.contract.formats.requantize). Port widths are the packet's requant fields
// (REQ_MULT_WIDTH, REQ_SHIFT_WIDTH); the contract keeps mult <= REQ_MULT_MAX (< 2^15) and
// REQ_SHIFT_MIN <= shift <= REQ_SHIFT_MAX (1..46), so |acc*mult| + 2^(shift-1) < 2^47 and
// the product register below (ACC_BITS + REQ_MULT_WIDTH + 1 signed bits) never overflows
// (docs/architecture.md, "The integer contract").
`default_nettype none
module dm_requant (
  input  wire               clk,
  input  wire  signed [deltamtl_contract_pkg::ACC_BITS-1:0] acc,
  input  wire        [deltamtl_contract_pkg::REQ_MULT_WIDTH-1:0] mult,
  input  wire        [deltamtl_contract_pkg::REQ_SHIFT_WIDTH-1:0] shift,
  output logic signed [deltamtl_contract_pkg::ACT_BITS-1:0] y
);
  // product width: acc (signed) times mult zero-extended by one sign bit
  localparam int PW = deltamtl_contract_pkg::ACC_BITS + deltamtl_contract_pkg::REQ_MULT_WIDTH + 1;
  localparam int ZW = PW - deltamtl_contract_pkg::REQ_MULT_WIDTH;
  localparam int SW = deltamtl_contract_pkg::REQ_SHIFT_WIDTH;
  localparam int YW = deltamtl_contract_pkg::ACT_BITS;
  localparam logic signed [PW-1:0] Y_MAX = PW'(deltamtl_contract_pkg::ACT_MAX);
  localparam logic signed [PW-1:0] Y_MIN = PW'(deltamtl_contract_pkg::ACT_MIN);
  logic signed [PW-1:0] prod;
  logic [SW-1:0] shift_q;

  always_ff @(posedge clk) begin
    prod <= PW'(acc) * $signed({ZW'(0), mult});
    shift_q <= shift;
  end
  // Round half up without a wide rounding adder: with x = prod / 2^(shift-1),
  // floor((prod + 2^(shift-1)) / 2^shift) = floor((floor(x) + 1) / 2). q is 2*prod shifted
  // right by shift, i.e. floor(x) (or 2*prod at shift 0, where the +1 is skipped and the
  // final halving gives prod back); the one-bit-wider q keeps both cases in one shifter.
  // yosys maps this to ~60% of the LUTs of the direct form (docs/rtl.md, "Resources").
  logic signed [PW:0] q, q1;
  logic signed [PW-1:0] r;
  assign q = $signed({prod, 1'b0}) >>> shift_q;
  assign q1 = q + ((shift_q == SW'(0)) ? (PW + 1)'(0) : (PW + 1)'(1));
  assign r = q1[PW:1];
  wire unused_ok = &{1'b0, q1[0]};  // below the result's LSB
  always_ff @(posedge clk) begin
    if (r > Y_MAX) y <= YW'(deltamtl_contract_pkg::ACT_MAX);
    else if (r < Y_MIN) y <= YW'(deltamtl_contract_pkg::ACT_MIN);
    else y <= r[YW-1:0];
  end
endmodule
`default_nettype wire
