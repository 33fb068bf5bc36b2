// deltamtl compute core, SystemVerilog twin of the HLS `core` (same AXI4-Stream ports).
//
// One input packet (header, W, dW, bias, req, x_ref, y_ref, X) -> one output packet
// (Y, [x_ref', y_ref'], trailer), bit for bit as contract/golden_core.py. Phases:
//   input    1 word/cycle; header checks, INDEX check on dW words, X rows delta-encoded
//            on the fly into a token-banked delta buffer and, per tile of T tokens, the
//            compacted list of inputs with a kept delta in any token of the tile
//   decide   refusal status (header > LENGTH > INDEX > NO_STATE); commit buffer flips
//   patch    DENSE/TEMPORAL with dW: W_b += dW, one non-zero per cycle
//   act      activation-sparse d W^T on a T x L array (token rows x output lanes): per
//            (output group, tile) a T-cycle swap (store the last tile's rows, load this
//            one's initial values), then one union entry i per cycle: lane l reads W[o][i]
//            once for the T tokens, row t reads its delta d[p][i]
//   wpass    TASK with dW: weight-sparse x_k dW^T, lanes over tokens, one dW non-zero per
//            cycle broadcast, ceil(P/L) passes over the dW list
//   unpatch  W_b -= dW
//   output   requantise 8 channels per cycle, stream Y, [x_ref', y_ref'], trailer
// State that must survive a refused packet (W bank, x_ref, y_ref) is double-buffered:
// loads go to the inactive half and a successful job flips the select bit, so a packet
// refused after TLAST leaves the resident state untouched (golden run_packet rule).
// docs/rtl.md documents the bank skew, the DSP packing and the cycle schedule.
`default_nettype none
module deltamtl_core #(
  parameter int MAX_TOKENS = deltamtl_params_pkg::MAX_TOKENS,
  parameter int MAX_IN = deltamtl_params_pkg::MAX_IN,
  parameter int MAX_OUT = deltamtl_params_pkg::MAX_OUT,
  parameter int MAX_NNZ_DW = deltamtl_params_pkg::MAX_NNZ_DW,
  parameter int LANES = deltamtl_params_pkg::LANES,
  parameter int MAX_WEIGHTS = deltamtl_params_pkg::MAX_WEIGHTS,
  parameter int TOKEN_ROWS = deltamtl_params_pkg::TOKEN_ROWS,  // T, token rows of the MAC array
  parameter int BEAT_WORDS = deltamtl_params_pkg::BEAT_WORDS   // B, 64-bit words per stream beat
) (
  input  wire                     ap_clk,
  input  wire                     ap_rst_n,
  input  wire  [64*BEAT_WORDS-1:0] s_axis_TDATA,
  input  wire                     s_axis_TVALID,
  output logic                    s_axis_TREADY,
  input  wire                     s_axis_TLAST,
  output logic [64*BEAT_WORDS-1:0] m_axis_TDATA,
  output logic                    m_axis_TVALID,
  input  wire                     m_axis_TREADY,
  output logic                    m_axis_TLAST
);
  // -------------------------------------------------------------------------------------
  // Sizes
  // -------------------------------------------------------------------------------------
  localparam int L = LANES;
  localparam int LB = $clog2(L);
  localparam int WI = (MAX_IN + 7) / 8;             // words per int8 input row
  localparam int GO = (MAX_OUT + L - 1) / L;        // output-channel groups of L
  localparam int TG = (MAX_TOKENS + L - 1) / L;     // token groups of L
  localparam int B = BEAT_WORDS;
  localparam int BB = (B > 1) ? $clog2(B) : 0;
  localparam int NQ = 4 * B;                        // requant banks: 8B channels per address
  localparam int HO4 = (MAX_OUT + 8 * B - 1) / (8 * B);  // requant rows of 8B entries
  // W bank half, per lane: rows o = l, l+L, ... of the job at (o/L)*ceil(I/8) + i/8, so a
  // half needs ceil(O/L)*ceil(I/8) words <= (O+L-1)(I+7)/(8L) for O*I <= MAX_WEIGHTS
  localparam int WH_BOUND = (MAX_WEIGHTS + 7 * MAX_OUT + (L - 1) * MAX_IN + 7 * (L - 1) + 8 * L - 1) / (8 * L);
  localparam int WH = (WH_BOUND < GO * WI) ? WH_BOUND : GO * WI;
  localparam int WDEPTH = 2 * WH;                   // per W bank, two halves
  localparam int XDEPTH = 2 * TG * WI;              // per x bank, two halves
  localparam int YDEPTH = MAX_TOKENS * GO;          // per y bank; halves in one 64-bit word
  localparam int T = TOKEN_ROWS;
  localparam int TB = (T > 1) ? $clog2(T) : 0;
  localparam logic [31:0] TMASK = 32'(T - 1);
  localparam int NT = (MAX_TOKENS + T - 1) / T;     // token tiles of T
  localparam int KAW = (NT > 1) ? $clog2(NT) : 1;
  localparam int DBDEPTH = NT * WI;                 // per delta bank: token p at (p/T)*WI
  localparam int DBAW = (DBDEPTH > 1) ? $clog2(DBDEPTH) : 1;
  localparam int NLIST = NT * MAX_IN;               // union list entries, worst case
  localparam int LDEPTH = (NLIST + 7) / 8;
  localparam int NA = $clog2(MAX_TOKENS * MAX_IN + 1);  // activation non-zeros (trailer)
  localparam int WAW = $clog2(WDEPTH);
  localparam int XAW = $clog2(XDEPTH);
  localparam int YAW = $clog2(YDEPTH);
  localparam int NW = $clog2(NLIST + 1);            // list positions 0..NLIST
  localparam int CI = (MAX_IN > 1) ? $clog2(MAX_IN) : 1;
  localparam int CO = (MAX_OUT > 1) ? $clog2(MAX_OUT) : 1;
  localparam int GAW = (GO > 1) ? $clog2(GO) : 1;
  localparam int RAW = (HO4 > 1) ? $clog2(HO4) : 1;
  localparam int DWE = CO + CI + 8 + 2;             // dW entry: row, col, value, row-first, row-last
  localparam int DM = (B > 2) ? B : 2;              // dW entries per list word (a beat's fit one)
  localparam int DMB = $clog2(DM);
  localparam int LE = CI;                           // union list entry: input index
  // Packed lists: entries padded to whole bytes, so each one is a byte-enable group of the
  // BRAM/URAM word (yosys maps segment enables only on byte boundaries).
  localparam int LEP = (LE + 7) / 8 * 8;
  localparam int DWP = (DWE + 7) / 8 * 8;
  localparam int LDEPTH2 = (LDEPTH + 1) / 2;        // list rows of one parity
  localparam int DDEPTH2 = (MAX_NNZ_DW + DM - 1) / DM;  // dW list words
  localparam int LAW2 = (LDEPTH2 > 1) ? $clog2(LDEPTH2) : 1;
  localparam int DAW2 = (DDEPTH2 > 1) ? $clog2(DDEPTH2) : 1;
  // dm_ram STYLE: the deep buffers (y, dW list) in UltraRAM, the per-lane W/x banks in block
  // RAM; the delta buffer in UltraRAM two banks a memory (dm_ram_pair: one bank uses a
  // third of a URAM's depth); the union list in LUTs; small ones left to the tool
  localparam int RAM_BLOCK = 1;
  localparam int RAM_ULTRA = 2;
  localparam int RAM_DIST = 3;
  localparam int FIFO_DEPTH = 16;
  localparam logic [31:0] MAX_TOKENS_U = 32'(MAX_TOKENS);
  localparam logic [31:0] MAX_IN_U = 32'(MAX_IN);
  localparam logic [31:0] MAX_OUT_U = 32'(MAX_OUT);
  localparam logic [31:0] MAX_NNZ_U = 32'(MAX_NNZ_DW);
  localparam logic [31:0] MAX_WEIGHTS_U = 32'(MAX_WEIGHTS);
  // packet field widths (contract/packets.py, through the generated package)
  localparam int FW_MODE = deltamtl_contract_pkg::HDR_MODE_WIDTH;
  localparam int FW_FLAGS = deltamtl_contract_pkg::HDR_FLAGS_WIDTH;
  localparam int FW_TH = deltamtl_contract_pkg::HDR_TH_WIDTH;
  localparam int FW_TOKENS = deltamtl_contract_pkg::HDR_TOKENS_WIDTH;
  localparam int FW_IN = deltamtl_contract_pkg::HDR_IN_DIM_WIDTH;
  localparam int FW_OUT = deltamtl_contract_pkg::HDR_OUT_DIM_WIDTH;
  localparam int FW_NNZ = deltamtl_contract_pkg::HDR_NNZ_DW_WIDTH;
  localparam int FW_TAG = deltamtl_contract_pkg::HDR_TAG_WIDTH;
  localparam int FW_STATUS = deltamtl_contract_pkg::TRL_STATUS_WIDTH;
  // flag bits the core keeps: every defined flag (bits above are refused as BAD_HEADER)
  localparam int NFLAGS = $clog2(deltamtl_contract_pkg::VALID_FLAGS + 1);
  // one requant entry as stored on chip: mult and shift, without the entry's spare bits
  localparam int QE = deltamtl_contract_pkg::REQ_SHIFT_LSB + deltamtl_contract_pkg::REQ_SHIFT_WIDTH;
  // contract constants at the widths used here
  localparam logic [FW_FLAGS-1:0] VALID_F = FW_FLAGS'(deltamtl_contract_pkg::VALID_FLAGS);
  localparam logic [FW_STATUS-1:0] CS_BAD_HEADER = FW_STATUS'(deltamtl_contract_pkg::CORE_STATUS_BAD_HEADER);
  localparam logic [FW_STATUS-1:0] CS_DIMS = FW_STATUS'(deltamtl_contract_pkg::CORE_STATUS_DIMS);
  localparam logic [FW_STATUS-1:0] CS_NNZ = FW_STATUS'(deltamtl_contract_pkg::CORE_STATUS_NNZ);
  localparam logic [FW_STATUS-1:0] CS_INDEX = FW_STATUS'(deltamtl_contract_pkg::CORE_STATUS_INDEX);
  localparam logic [FW_STATUS-1:0] CS_NO_STATE = FW_STATUS'(deltamtl_contract_pkg::CORE_STATUS_NO_STATE);
  localparam logic [FW_STATUS-1:0] CS_LENGTH = FW_STATUS'(deltamtl_contract_pkg::CORE_STATUS_LENGTH);
  localparam int SEC_HEADER = deltamtl_contract_pkg::SECTION_HEADER;
  localparam int SEC_W = deltamtl_contract_pkg::SECTION_W;
  localparam int SEC_DW = deltamtl_contract_pkg::SECTION_DW;
  localparam int SEC_BIAS = deltamtl_contract_pkg::SECTION_BIAS;
  localparam int SEC_REQ = deltamtl_contract_pkg::SECTION_REQ;
  localparam int SEC_XREF = deltamtl_contract_pkg::SECTION_XREF;
  localparam int SEC_YREF = deltamtl_contract_pkg::SECTION_YREF;
  localparam int SEC_X = deltamtl_contract_pkg::SECTION_X;

  initial begin
    if (L < 8 || (1 << LB) != L) $fatal(1, "deltamtl_core: LANES=%0d must be a power of two >= 8", L);
    if (T < 1 || T > 64 || (1 << TB) != T) $fatal(1, "deltamtl_core: TOKEN_ROWS=%0d must be a power of two <= 64", T);
    // a beat's B rows / tokens / channels must land in distinct banks (contract CoreLimits)
    if (B < 1 || B > 8 || (1 << BB) != B || B > T || (B > 1 && 8 * B > L))
      $fatal(1, "deltamtl_core: BEAT_WORDS=%0d must be a power of two <= 8, <= TOKEN_ROWS, 8B <= LANES", B);
    // the datapath is written for 8 int8 / 2 int32 per 64-bit stream word and 16-bit dims
    if (deltamtl_contract_pkg::STREAM_DATA_BITS != 64 || deltamtl_contract_pkg::INT8_PER_WORD != 8
        || FW_TOKENS != 16 || FW_IN != 16 || FW_OUT != 16)
      $fatal(1, "deltamtl_core: written for 64-bit stream words and 16-bit dimension fields");
  end

  // -------------------------------------------------------------------------------------
  // Header, job registers and persistent state descriptors
  // -------------------------------------------------------------------------------------
  typedef enum logic [3:0] {
    ST_HDR0, ST_HDR1, ST_SETUP, ST_IN, ST_DRAIN, ST_DECIDE,
    ST_PATCH, ST_ACT, ST_WPASS, ST_UNPATCH, ST_WAITPIPE, ST_OUT
  } state_t;
  state_t st, st_after_pipe;

  logic [63:0] h0;
  logic [15:0] prev_row;   // row of the previous dW word
  logic [FW_MODE-1:0]   j_mode;
  logic [NFLAGS-1:0]    j_flags;
  logic [FW_TH-1:0]     j_th;
  logic [FW_TOKENS-1:0] j_p;
  logic [FW_IN-1:0]     j_i;
  logic [FW_OUT-1:0]    j_o;
  logic [FW_TAG-1:0]    j_tag;
  logic [FW_NNZ-1:0]    j_nnz;
  logic [FW_STATUS-1:0] j_status;
  logic        j_idx_err, j_nostate;
  logic [12:0] j_wi;        // ceil(I/8)
  logic [15:0] j_go;        // ceil(O/L)
  logic [15:0] j_tg;        // ceil(P/L)
  logic [15:0] j_nt;        // ceil(P/T)
  // beats (B words each): row blocks of tokens / output rows, padded int32 and Y rows, dW
  logic [15:0] j_pb;        // ceil(P/B)
  logic [15:0] j_ob;        // ceil(O/B)
  logic [15:0] j_hb2;       // ceil(ceil(O/2)/B)
  logic [15:0] j_hb8;       // ceil(ceil(O/8)/B)
  logic [FW_NNZ-1:0] j_nb;  // ceil(nnz_dw/B)

  wire j_load_w = j_flags[deltamtl_contract_pkg::FLAG_LOAD_W_BIT];
  wire j_load_ref = j_flags[deltamtl_contract_pkg::FLAG_LOAD_REF_BIT];
  wire j_emit_ref = j_flags[deltamtl_contract_pkg::FLAG_EMIT_REF_BIT];
  wire j_dense = (j_mode == FW_MODE'(deltamtl_contract_pkg::MODE_DENSE));
  wire j_task = (j_mode == FW_MODE'(deltamtl_contract_pkg::MODE_TASK));
  wire j_refs_in = !j_dense && j_load_ref;
  wire j_has_bias = (j_mode != FW_MODE'(deltamtl_contract_pkg::MODE_TEMPORAL));

  // Resident state: which half holds it, and the dims it was written with.
  logic wsel, rsel, w_valid, r_valid;
  logic [15:0] w_o, w_i, r_p, r_i, r_o;
  // Halves a job uses: loads and results go to the inactive half.
  // 1-bit inactive halves (a size cast would widen ~x before inverting it)
  wire wsel_n = ~wsel;
  wire rsel_n = ~rsel;
  // captured at SETUP: the flips in DECIDE must not move a running job's buffers
  logic w_use, x_src, x_dst;

  // header checks (golden check_header), on word 0 (registered) and word 1 (incoming)
  function automatic logic [FW_STATUS-1:0] header_status(input logic [63:0] w0, input logic [FW_NNZ-1:0] nnz);
    logic [15:0] p, i, o;
    p = w0[deltamtl_contract_pkg::HDR_TOKENS_LSB +: FW_TOKENS];
    i = w0[deltamtl_contract_pkg::HDR_IN_DIM_LSB +: FW_IN];
    o = w0[deltamtl_contract_pkg::HDR_OUT_DIM_LSB +: FW_OUT];
    if (w0[deltamtl_contract_pkg::HDR_MODE_LSB +: FW_MODE] > FW_MODE'(deltamtl_contract_pkg::MODE_TASK)
        || (w0[deltamtl_contract_pkg::HDR_FLAGS_LSB +: FW_FLAGS] & ~VALID_F) != FW_FLAGS'(0)
        || w0[deltamtl_contract_pkg::HDR_TH_LSB +: FW_TH] == FW_TH'(0))
      header_status = CS_BAD_HEADER;
    else if (p == 16'd0 || {16'd0, p} > MAX_TOKENS_U || i == 16'd0 || {16'd0, i} > MAX_IN_U
             || o == 16'd0 || {16'd0, o} > MAX_OUT_U || {16'd0, o} * {16'd0, i} > MAX_WEIGHTS_U)
      header_status = CS_DIMS;
    else if (nnz > MAX_NNZ_U)
      header_status = CS_NNZ;
    else
      header_status = '0;
  endfunction

  // -------------------------------------------------------------------------------------
  // Input sections
  // -------------------------------------------------------------------------------------
  logic [3:0]  sec;          // SECTION_* of the current input word
  logic [39:0] sec_left;     // beats left in the current section
  logic [15:0] sec_row;      // row inside the section (W, XREF, X: block of B rows)
  logic [15:0] sec_col;      // beat inside the row (row blocks: the rows' word)
  logic [31:0] sec_idx;      // beat index inside the section
  logic [15:0] sec_rowlen;   // beats per row of the current section

  // section sizes of the current job, and the first non-empty section after the current
  // one (REQ and X are never empty)
  logic [39:0] sz [8];
  logic [3:0]  sec_from, nsec;
  always_comb begin : p_sections
    for (int k = 0; k < 8; k++) sz[k] = 40'd0;
    sz[SEC_W] = j_load_w ? 40'(j_ob) * 40'(j_wi) : 40'd0;
    sz[SEC_DW] = 40'(j_nb);
    sz[SEC_BIAS] = j_has_bias ? 40'(j_hb2) : 40'd0;
    sz[SEC_REQ] = 40'(j_hb2);
    sz[SEC_XREF] = j_refs_in ? 40'(j_pb) * 40'(j_wi) : 40'd0;
    sz[SEC_YREF] = j_refs_in ? 40'(j_p) * 40'(j_hb2) : 40'd0;
    sz[SEC_X] = 40'(j_pb) * 40'(j_wi);
    sec_from = (st == ST_SETUP) ? 4'(SEC_HEADER) : sec;
    nsec = 4'(SEC_X);
    for (int k = SEC_X; k >= SEC_W; k--)
      if (4'(k) > sec_from && sz[k] != 40'd0) nsec = 4'(k);
  end
  wire [15:0] nsec_rowlen = (nsec == 4'(SEC_YREF)) ? j_hb2 : 16'(j_wi);
  // word r of the beat, and its 32-bit halves
  logic [63:0] in_w [B];
  logic [31:0] in_h [2*B];
  for (genvar r = 0; r < B; r++) begin : g_inw
    assign in_w[r] = s_axis_TDATA[64*r +: 64];
    assign in_h[2*r] = s_axis_TDATA[64*r +: 32];
    assign in_h[2*r+1] = s_axis_TDATA[64*r+32 +: 32];
  end
  // the header's two words: two beats at B = 1, one beat otherwise
  localparam int HW1 = (B > 1) ? 64 : 0;
  wire [63:0] hw0 = (B == 1) ? h0 : s_axis_TDATA[63:0];
  /* verilator lint_off UNUSEDSIGNAL */
  wire [63:0] hw1 = s_axis_TDATA[HW1 +: 64];  // the header's spare bits are ignored
  /* verilator lint_on UNUSEDSIGNAL */
  wire hdr_beat = (st == ST_HDR1) || (B > 1 && st == ST_HDR0);

  wire in_acc = s_axis_TVALID && s_axis_TREADY;
  assign s_axis_TREADY = (st == ST_HDR0) || (st == ST_HDR1) || (st == ST_IN) || (st == ST_DRAIN);
  wire in_data = in_acc && (st == ST_IN);
  wire in_final = (sec == 4'(SEC_X)) && (sec_left == 40'd1);

  // -------------------------------------------------------------------------------------
  // Memories
  // -------------------------------------------------------------------------------------
  // W bank: bank k holds rows o with o % L == k, 8 columns per word, two halves.
  logic           w_we [L];
  logic [WAW-1:0] w_waddr, w_raddr;
  logic [63:0]    w_wdata [L];
  logic [63:0]    w_rdata [L];
  // x buffers: bank k holds tokens p with p % L == k, one 8-column word per address.
  logic           x_we [L];
  logic [XAW-1:0] x_waddr, x_raddr;
  logic [63:0]    x_wdata [L];
  logic [63:0]    x_rdata [L];
  // y buffers (int32), skewed: element (p, o) lives in bank (p + o) % L at p*GO + o/L, so
  // L consecutive channels of one token and one channel of L consecutive tokens both
  // fall into L distinct banks (act pass and weight pass are conflict-free).
  // The two halves of element (p, o) share one 64-bit word (half 0 low, half 1 high):
  // one write-enable segment each, so the second half costs no extra primitive depth.
  logic [1:0]     y_we [L];
  logic [YAW-1:0] y_waddr [L];
  logic [YAW-1:0] y_raddr [L];
  logic [31:0]    y_wdata [L];
  logic [31:0]    y_rdata [L];
  logic [63:0]    y_rword [L];
  logic           y_whalf, y_rhalf, y_rhalf_q;
  // union list (per tile, the inputs with a kept delta in any of its tokens): position n
  // is entry n % 8 of row n / 8; rows alternate between two 8-entry-wide memories (a
  // cycle's up to 8 entries span two rows)
  logic [7:0]       l_we [2];
  logic [LAW2-1:0]  l_waddr [2];
  logic [8*LEP-1:0] l_wdata;
  logic [LAW2-1:0]  l_raddr;
  logic [8*LEP-1:0] l_rword [2];
  // dW non-zeros, DM per word (entry n in segment n % DM of word n / DM)
  logic [DM-1:0]    d_we;
  logic [DAW2-1:0]  d_waddr, d_raddr;
  logic [DWE-1:0]   d_rdata;
  /* verilator lint_off UNUSEDSIGNAL */
  logic [DM*DWP-1:0] d_rword;             // the byte padding of each entry is never read
  /* verilator lint_on UNUSEDSIGNAL */
  // bias (bank o % L at o / L) and requant entries (4 banks of 2 entries: 8 per address)
  logic           b_we [L];
  logic [GAW-1:0] b_waddr, b_raddr;
  logic [31:0]    b_wdata [L];
  logic [31:0]    b_rdata [L];
  logic           q_we [NQ];
  logic [RAW-1:0] q_waddr, q_raddr;
  logic [2*QE-1:0] q_wdata [NQ];
  logic [2*QE-1:0] q_rdata [NQ];
  // per-tile end of the union list (small: distributed RAM / registers); power-of-two
  // sized so that any tile index reads inside the array
  logic [NW-1:0]  tile_end [1 << KAW];
  // delta buffer: bank t holds tokens p with p % T == t at (p/T)*WI + i/8, 8 int9 deltas
  // per 72-bit word (0 where not kept); all banks read one address, the T rows of a tile
  logic           db_we [T];
  logic [DBAW-1:0] db_waddr, db_raddr;
  logic [71:0]    db_wdata [T];
  logic [71:0]    db_rdata [T];

  for (genvar k = 0; k < L; k++) begin : g_bank
    dm_ram #(.WIDTH(64), .DEPTH(WDEPTH), .STYLE(RAM_BLOCK)) u_w (
      .clk(ap_clk), .we(w_we[k]), .waddr(w_waddr), .wdata(w_wdata[k]), .raddr(w_raddr), .rdata(w_rdata[k]));
    dm_ram #(.WIDTH(64), .DEPTH(XDEPTH), .STYLE(RAM_BLOCK)) u_x (
      .clk(ap_clk), .we(x_we[k]), .waddr(x_waddr), .wdata(x_wdata[k]), .raddr(x_raddr), .rdata(x_rdata[k]));
    dm_ram #(.WIDTH(64), .DEPTH(YDEPTH), .SEGS(2), .STYLE(RAM_ULTRA)) u_y (
      .clk(ap_clk), .we(y_we[k]), .waddr(y_waddr[k]), .wdata({y_wdata[k], y_wdata[k]}),
      .raddr(y_raddr[k]), .rdata(y_rword[k]));
    assign y_rdata[k] = y_rhalf_q ? y_rword[k][63:32] : y_rword[k][31:0];
    dm_ram #(.WIDTH(32), .DEPTH(GO)) u_b (
      .clk(ap_clk), .we(b_we[k]), .waddr(b_waddr), .wdata(b_wdata[k]),
      .raddr(b_raddr), .rdata(b_rdata[k]));
  end
  // delta banks t and t + T/2 share one UltraRAM (2 x 1248 of its 4096 rows at the board
  // maxima: 8 URAM instead of ~36K LUTs of LUT RAM) when a beat's B tokens always fall in
  // one half of the banks (B <= T/2, B | T); otherwise one LUT-RAM bank each
  if (T >= 2 * B) begin : g_dbuf_pair
    for (genvar t = 0; t < T / 2; t++) begin : g_dbuf
      dm_ram_pair #(.WIDTH(72), .DEPTH(DBDEPTH)) u_d (
        .clk(ap_clk), .we_lo(db_we[t]), .we_hi(db_we[t + T / 2]), .waddr(db_waddr),
        .wdata_lo(db_wdata[t]), .wdata_hi(db_wdata[t + T / 2]), .raddr(db_raddr),
        .rdata_lo(db_rdata[t]), .rdata_hi(db_rdata[t + T / 2]));
    end
  end else begin : g_dbuf_dist
    for (genvar t = 0; t < T; t++) begin : g_dbuf
      dm_ram #(.WIDTH(72), .DEPTH(DBDEPTH), .STYLE(RAM_DIST)) u_d (
        .clk(ap_clk), .we(db_we[t]), .waddr(db_waddr), .wdata(db_wdata[t]), .raddr(db_raddr),
        .rdata(db_rdata[t]));
    end
  end
  for (genvar k = 0; k < 2; k++) begin : g_list
    dm_ram #(.WIDTH(8 * LEP), .DEPTH(LDEPTH2), .SEGS(8), .STYLE(RAM_DIST)) u_l (
      .clk(ap_clk), .we(l_we[k]), .waddr(l_waddr[k]), .wdata(l_wdata), .raddr(l_raddr),
      .rdata(l_rword[k]));
  end
  for (genvar k = 0; k < NQ; k++) begin : g_req
    dm_ram #(.WIDTH(2 * QE), .DEPTH(HO4)) u_q (
      .clk(ap_clk), .we(q_we[k]), .waddr(q_waddr), .wdata(q_wdata[k]), .raddr(q_raddr), .rdata(q_rdata[k]));
  end
  dm_ram #(.WIDTH(DM * DWP), .DEPTH(DDEPTH2), .SEGS(DM), .STYLE(RAM_ULTRA)) u_dw (
    .clk(ap_clk), .we(d_we), .waddr(d_waddr), .wdata(d_wword), .raddr(d_raddr),
    .rdata(d_rword));

  // -------------------------------------------------------------------------------------
  // Delta encoder (input side): X beat accepted at cycle c (word j of tokens p0 .. p0+B-1,
  // one tile since B | T), x_ref read at c, encoded at c+1
  // -------------------------------------------------------------------------------------
  logic        e_v;
  logic [63:0] e_x [B];
  logic [15:0] e_p, e_w;                   // the block's first token; the word
  logic [NA-1:0] nnz_act;                  // activation non-zeros (the trailer's count)
  logic [NW-1:0] u_cnt;                    // union list fill level
  logic [8*WI-1:0] umask;                  // inputs already in the current tile's list
  logic [7:0]  e_keep [B];
  logic [7:0]  e_kor, e_new;               // kept in any of the B tokens; new to the list
  logic        e_tv [B];                   // token p0+r < P (not a padding row)
  logic [63:0] e_xnew [B];
  logic [71:0] e_dword [B];
  logic [6:0]  e_cnt;
  logic [3:0]  e_ucnt;
  logic [3:0]  e_upre [8];
  logic [63:0] e_xref [B];
  // a tile starts at the first word of token kT and ends at the last word of the block
  // holding token kT+T-1 or the job's last token
  wire e_tstart = ((32'(e_p) & TMASK) == 32'd0) && (e_w == 16'd0);
  wire e_tlast = (((32'(e_p) + 32'(B - 1)) & TMASK) == TMASK || 32'(e_p) + 32'(B) >= 32'(j_p))
                 && (e_w == 16'(j_wi) - 16'd1);
  // the word's inputs seen earlier in this tile (none at the tile's first word)
  wire [7:0] e_seen = e_tstart ? 8'd0 : umask[8*e_w +: 8];

  // e_p is a multiple of B (a beat's block), so token e_p + r sits in bank
  // (e_p & ~(B-1)) | r: an L/B-way select per word, not an L-way one
  for (genvar r = 0; r < B; r++) begin : g_exref
    assign e_xref[r] = x_rdata[(LB'(e_p) & ~LB'(B - 1)) | LB'(r)];
  end
  always_comb begin
    logic [15:0] col;
    logic signed [8:0] xv, rv, dv;
    logic [8:0] mag;
    e_cnt = 7'd0;
    e_ucnt = 4'd0;
    e_kor = 8'd0;
    for (int r = 0; r < B; r++) begin
      e_tv[r] = 32'(e_p) + 32'(r) < 32'(j_p);
      for (int j = 0; j < 8; j++) begin
        col = {e_w[12:0], 3'(j)};
        xv = 9'($signed(e_x[r][8*j +: 8]));
        rv = 9'($signed(e_xref[r][8*j +: 8]));
        dv = j_dense ? xv : xv - rv;
        mag = dv[8] ? 9'(-dv) : dv;
        e_keep[r][j] = e_tv[r] && (col < j_i) && (j_dense ? (xv != 9'sd0) : (mag >= {1'b0, j_th}));
        e_xnew[r][8*j +: 8] = (col >= j_i) ? 8'd0
                              : ((j_dense || e_keep[r][j]) ? e_x[r][8*j +: 8] : e_xref[r][8*j +: 8]);
        e_dword[r][9*j +: 9] = e_keep[r][j] ? dv : 9'd0;
        e_cnt = e_cnt + {6'd0, e_keep[r][j]};
      end
      e_kor = e_kor | e_keep[r];
    end
    // union entries: kept in a token here and not yet listed for this tile, ranked by a
    // prefix count (at most 8 a cycle whatever B)
    for (int j = 0; j < 8; j++) begin
      e_new[j] = e_kor[j] && !e_seen[j];
      e_upre[j] = e_ucnt;
      e_ucnt = e_ucnt + {3'd0, e_new[j]};
    end
  end

  // -------------------------------------------------------------------------------------
  // Compute pipeline (act and weight passes): s0 generator, s1 list/dW data, s2 operand
  // data, s3 operands -> DSPs, s4 products -> accumulate (act: and store) and write back.
  // -------------------------------------------------------------------------------------
  // act generator: a T-item prologue, then for each output group g, for each tile k, a slot
  // of max(|U_k|, T) items: one MAC item per entry of the tile's union list, the first T
  // also storing the previous tile's tokens; a T-item epilogue stores the last tile. Weight
  // pass: for each token group t, one item per dW entry.
  logic [15:0]   g_g, g_k, g_pg, g_pk, g_t;    // group, tile, the previous tile's; token group
  logic [15:0]   g_c;                           // cycle inside the slot
  logic [1:0]    g_ph;                          // G_PRO, G_RUN, G_EPI
  logic          g_prev;                        // a previous tile to store
  localparam logic [1:0] G_PRO = 2'd0, G_RUN = 2'd1, G_EPI = 2'd2;
  logic [NW-1:0] g_r;
  logic [31:0]   g_dr;
  wire [NW-1:0]  u_start = (g_k == 16'd0) ? NW'(0) : tile_end[KAW'(g_k - 16'd1)];
  wire [NW-1:0]  u_end = tile_end[KAW'(g_k)];
  wire [NW-1:0]  u_len = u_end - u_start;
  // the (group, tile) after the current one
  wire           g_klast = (g_k == j_nt - 16'd1);
  wire           g_hasnext = !(g_klast && g_g == j_go - 16'd1);
  wire [15:0]    g_nk = g_klast ? 16'd0 : g_k + 16'd1;
  wire [15:0]    g_ng = g_klast ? g_g + 16'd1 : g_g;
  wire           g_run = (st == ST_ACT) && (g_ph == G_RUN);
  wire           g_mc = g_run && 32'(g_c) < 32'(u_len);                 // MAC item
  wire           g_sw = (st == ST_ACT) && g_ph != G_PRO && g_c == 16'd0; // switch
  wire           g_st = (st == ST_ACT) && g_ph != G_PRO && g_prev && 32'(g_c) < 32'(T);
  wire [31:0]    g_sp = (32'(g_pk) << TB) + 32'(g_c);   // token a store item stores

  // stage registers
  logic        v1, v2, v3, v4, pw1, pw2, pw3, pw4;   // valid, pass is weight pass
  logic        sw1, sw2, sw3;                         // act: switch (a new tile starts)
  logic        mc1, mc2;                              // act: MAC
  logic        st1, st2, st3, st4;                    // act: store item
  logic        f2, f3, f4, l2, l3, l4;                // weight pass: row segment first/last
  logic        lr1;                                   // last dW entry
  logic        sv1, sv2, sv3;                         // the store item is a token < P
  logic [15:0] sp1, sp2, sp3;                         // token a store item stores
  logic [15:0] g1, g2, sg1, sg2, sg3, k1;             // group (weight pass: token group),
                                                      // stored group, tile
  /* verilator lint_off UNUSEDSIGNAL */
  logic [15:0] g3;                                    // weight pass: token group (low bits)
  /* verilator lint_on UNUSEDSIGNAL */
  logic [2:0]  ls1;
  logic        lpar1;                                 // list row parity
  logic [DMB-1:0] dpar1;                              // dW entry's segment
  logic [15:0] o2, o3;
  logic [8:0]  a2;
  logic [2:0]  bs2;
  logic [LB-1:0] rot2, irot4, srot4;
  logic [6:0]  srow4;                                 // row of st a store item writes
  logic [L*8-1:0] op_bank, op_lane;
  logic [7:0]  ops3 [L];
  logic [8:0]  d3 [T];                                // row operands (weight pass: d3[0] = dW)
  logic [31:0] bias4 [L];
  logic [YAW-1:0] ya4 [L];
  logic        m4 [L];
  logic signed [17:0] prod [T*L];                     // PE (t, l) product (DSP register)
  logic [31:0] pe [T*L];                              // PE (t, l): token kT+t, output gL+l
  // shadow rows: st holds the previous tile's sums while pe MACs the next tile; the cycle
  // before a switch moves pe (with its last product) to st and restarts pe from zero, and
  // a store adds the token's initial value as it leaves (docs/rtl.md, "Scaled engine")
  logic [31:0] pe_sum [T*L];
  logic [31:0] st_sh [T*L];
  logic [31:0] sum [L];                               // weight pass: lane sums
  logic [31:0] nsum [L];
  logic [31:0] init_lane [L];
  logic [31:0] st_row [L];                            // st's row of the store item (lanes)
  logic [L*32-1:0] yref_bank, yref_lane, st_lane, st_bank;

  // s1 decode
  wire [8*LEP-1:0] s1_lrow = l_rword[lpar1];
  wire [LE-1:0]  s1_le = s1_lrow[LEP*ls1 +: LE];
  assign d_rdata = d_rword[DWP*dpar1 +: DWE];
  wire [CO-1:0]  s1_drow = d_rdata[DWE-1 -: CO];
  wire [CI-1:0]  s1_dcol = d_rdata[DWE-1-CO -: CI];
  wire [7:0]     s1_dval = d_rdata[9:2];
  wire           s1_dfirst = d_rdata[1];
  wire           s1_dlast = d_rdata[0];
  wire [CI-1:0]  s1_col = pw1 ? s1_dcol : s1_le;

  // operand bytes of every bank onto the lanes: act, W bank k is output lane k (rot2 = 0);
  // weight pass, x bytes rotated onto the y-bank lanes
  for (genvar k = 0; k < L; k++) begin : g_opsel
    assign op_bank[k*8 +: 8] = pw2 ? x_rdata[k][8*bs2 +: 8] : w_rdata[k][8*bs2 +: 8];
  end
  dm_rotate #(.N(L), .W(8)) u_rot_op (.din(op_bank), .s(rot2), .dout(op_lane));

  // the T x L MAC array: row t has L/2 DSP48E2, each two lanes' weights sharing the row's
  // delta (one weight read per lane feeds the T rows); the weight pass uses row 0
  for (genvar t = 0; t < T; t++) begin : g_row
    for (genvar j = 0; j < L / 2; j++) begin : g_mac
      dm_mac_pair u_mac (.clk(ap_clk), .a(d3[t]), .w0(ops3[2*j]), .w1(ops3[2*j+1]),
                         .p0(prod[t*L+2*j]), .p1(prod[t*L+2*j+1]));
    end
  end

  // store: the stored token's y_ref from the banks (element (p, o) in bank (p+o) % L) onto
  // the output lanes, and the row plus its initial value (lane order) back onto the banks
  // y_ref input: bank (p + 2Bm + j) % L takes channel j, a rotation by (p + 2Bm) % L
  wire yin_we = in_data && sec == 4'(SEC_YREF);
  wire [LB-1:0] srot = yin_we ? LB'(sec_row) + LB'(sec_col << (BB + 1)) : srot4;
  for (genvar k = 0; k < L; k++) begin : g_swapsel
    // the store item's row of st: a T:1 select by an index into lane k's column (written
    // as an indexed part-select, the form yosys maps to a mux tree; an if-chain over the
    // rows cost twice the LUTs)
    logic [32*T-1:0] st_col;
    for (genvar t = 0; t < T; t++) begin : g_col
      assign st_col[32*t +: 32] = st_sh[t*L+k];
    end
    assign st_row[k] = st_col[32*32'(srow4) +: 32];
    assign yref_bank[k*32 +: 32] = y_rdata[k];
    // a store writes the row's sum plus the token's initial value; y_ref input beats share
    // the rotator: lane c carries channel c % 2B of the beat
    assign st_lane[k*32 +: 32] = yin_we ? in_h[k % (2 * B)] : st_row[k] + init_lane[k];
  end
  dm_rotate #(.N(L), .W(32)) u_rot_yref (.din(yref_bank), .s(irot4), .dout(yref_lane));
  dm_rotate #(.N(L), .W(32)) u_rot_store (.din(st_lane), .s(srot), .dout(st_bank));
  // y address (act swap: every bank p*GO+g; weight pass, bank b: token t*L+((b-o)%L))
  function automatic logic [YAW-1:0] y_addr(input logic [31:0] p, input logic [31:0] g);
    y_addr = YAW'(p * GO + g);
  endfunction

  logic [15:0] s3_tok [L];
  for (genvar b = 0; b < L; b++) begin : g_lane
    logic [LB-1:0] off;
    assign off = LB'(b) - o3[LB-1:0];
    assign s3_tok[b] = {g3[15-LB:0], off};
  end

  // -------------------------------------------------------------------------------------
  // Patch pipeline (W_b +/- dW): s0 dW read, s1 W read, s2 modify and write (forwarded)
  // -------------------------------------------------------------------------------------
  logic          pv1, pv2, psub;
  logic [2:0]    pcol2;
  logic [7:0]    pval2;
  logic [WAW-1:0] pa2, pa_last;
  logic [LB-1:0] pbank2, pbank_last;
  logic          pw_last_v;
  logic [63:0]   pw_last;
  logic [63:0]   p_word, p_new;
  assign p_word = (pw_last_v && pa_last == pa2 && pbank_last == pbank2) ? pw_last : w_rdata[pbank2];
  always_comb begin
    p_new = p_word;
    p_new[8*pcol2 +: 8] = psub ? p_word[8*pcol2 +: 8] - pval2 : p_word[8*pcol2 +: 8] + pval2;
  end
  wire [WAW-1:0] s1_pw_addr = WAW'(w_use) * WAW'(WH)
                              + WAW'(32'(s1_drow >> LB) * 32'(j_wi) + 32'(s1_dcol >> 3));

  // -------------------------------------------------------------------------------------
  // Output pipeline: o0 issue reads, o1 select, o2 multiply, o3 round/clamp, push FIFO
  // -------------------------------------------------------------------------------------
  // the trailer word at the contract's field positions; bits no field covers are zero
  function automatic logic [63:0] trailer_word(input logic [FW_STATUS-1:0] status,
                                               input logic [FW_TAG-1:0] tag,
                                               input logic [FW_NNZ-1:0] nnz);
    trailer_word = 64'd0;
    trailer_word[deltamtl_contract_pkg::TRL_NNZ_ACT_LSB +: deltamtl_contract_pkg::TRL_NNZ_ACT_WIDTH] = nnz;
    trailer_word[deltamtl_contract_pkg::TRL_TAG_LSB +: deltamtl_contract_pkg::TRL_TAG_WIDTH] = tag;
    trailer_word[deltamtl_contract_pkg::TRL_STATUS_LSB +: deltamtl_contract_pkg::TRL_STATUS_WIDTH] = status;
  endfunction
  typedef enum logic [1:0] {K_Y, K_XO, K_YO, K_TRL} okind_t;
  okind_t ok0, ok1, ok2, ok3;
  logic  ov1, ov2, ov3, ov4;
  // one beat: Y 8B channels of a token, x_ref' word j of B tokens, y_ref' 2B channels
  localparam int OW = 64 * B;
  localparam int NRQ = 8 * B;
  logic [15:0] op_p, op_m;                   // generator position (x_ref': token block)
  logic [15:0] op1t;
  logic [LB-1:0] op1x;                       // x_ref': bank of the block's first token
  logic [14:0] op1m;
  logic [OW-1:0] od1, od2, od3, od4;         // pass-through data (XO, YO, trailer)
  logic [OW-1:0] o_word;
  okind_t      ok4;
  logic [NRQ-1:0] omask4;
  logic [31:0] oacc2 [NRQ];
  logic [deltamtl_contract_pkg::REQ_MULT_WIDTH-1:0]  omul2 [NRQ];
  logic [deltamtl_contract_pkg::REQ_SHIFT_WIDTH-1:0] osh2 [NRQ];
  logic [NRQ-1:0] omask2, omask3;
  logic signed [7:0] oy4 [NRQ];
  logic [4:0]  fifo_cnt, inflight;
  logic [OW:0] fifo [FIFO_DEPTH];
  logic [3:0]  fifo_rd, fifo_wr;
  wire         o_space = (32'(fifo_cnt) + 32'(inflight)) < FIFO_DEPTH;
  wire         fifo_pop = m_axis_TVALID && m_axis_TREADY;
  logic        o_issue;
  logic        o_last_item;

  for (genvar j = 0; j < NRQ; j++) begin : g_rq
    dm_requant u_rq (.clk(ap_clk), .acc(oacc2[j]), .mult(omul2[j]), .shift(osh2[j]), .y(oy4[j]));
  end
  always_comb begin
    o_word = od4;
    if (ok4 == K_Y) for (int j = 0; j < NRQ; j++) o_word[8*j +: 8] = omask4[j] ? oy4[j] : 8'd0;
  end

  assign m_axis_TVALID = (fifo_cnt != 5'd0);
  assign m_axis_TDATA = fifo[fifo_rd][OW-1:0];
  assign m_axis_TLAST = fifo[fifo_rd][OW];

  // output generator: next item
  always_comb begin
    o_issue = (st == ST_OUT) && o_space;
    case (ok0)
      K_Y: o_last_item = (op_m == j_hb8 - 16'd1) && (op_p == j_p - 16'd1);
      K_XO: o_last_item = (op_m == 16'(j_wi) - 16'd1) && (op_p == j_pb - 16'd1);
      K_YO: o_last_item = (op_m == j_hb2 - 16'd1) && (op_p == j_p - 16'd1);
      default: o_last_item = 1'b1;
    endcase
  end

  // -------------------------------------------------------------------------------------
  // Memory port muxes
  // -------------------------------------------------------------------------------------
  // W and x row blocks: a beat's B rows (tokens) r0+r are in banks (r0+r) % L (B | L), all
  // at one address; bank k takes word k % B. Padding rows (>= O, >= P) are not written.
  wire [15:0] in_r0 = sec_row << BB;        // first row of the beat's block
  always_comb begin : p_wport
    for (int k = 0; k < L; k++) begin
      w_we[k] = in_data && sec == 4'(SEC_W) && (k >> BB) == 32'(LB'(in_r0)) >> BB
                && 32'(in_r0) + 32'(k % B) < 32'(j_o);
      w_wdata[k] = pv2 ? p_new : in_w[k % B];
    end
    w_waddr = WAW'(wsel_n) * WAW'(WH) + WAW'(32'(in_r0 >> LB) * 32'(j_wi) + 32'(sec_col));
    if (pv2) begin
      w_we[pbank2] = 1'b1;
      w_waddr = pa2;
    end
    if (pv1) w_raddr = s1_pw_addr;
    else w_raddr = WAW'(w_use) * WAW'(WH) + WAW'(32'(g1) * 32'(j_wi) + 32'(s1_col >> 3));
  end

  always_comb begin : p_xport
    for (int k = 0; k < L; k++) begin
      x_we[k] = in_data && sec == 4'(SEC_XREF) && (k >> BB) == 32'(LB'(in_r0)) >> BB
                && 32'(in_r0) + 32'(k % B) < 32'(j_p);
      x_wdata[k] = e_v ? e_xnew[k % B] : in_w[k % B];
    end
    x_waddr = XAW'(rsel_n) * XAW'(TG * WI) + XAW'(32'(in_r0 >> LB) * WI + 32'(sec_col));
    if (e_v) begin
      for (int k = 0; k < L; k++)
        x_we[k] = (k >> BB) == 32'(LB'(e_p)) >> BB && e_tv[k % B];
      x_waddr = XAW'(x_dst) * XAW'(TG * WI) + XAW'(32'(e_p >> LB) * WI + 32'(e_w));
    end
    if (in_data && sec == 4'(SEC_X))
      x_raddr = XAW'(x_src) * XAW'(TG * WI) + XAW'(32'(in_r0 >> LB) * WI + 32'(sec_col));
    else if (st == ST_OUT)
      x_raddr = XAW'(x_dst) * XAW'(TG * WI) + XAW'(((32'(op_p) << BB) >> LB) * WI + 32'(op_m));
    else
      x_raddr = XAW'(x_dst) * XAW'(TG * WI) + XAW'(32'(g1) * WI + 32'(s1_col >> 3));
  end

  // y_ref loads: beat m of token p brings entries (p, 2Bm + j), j < 2B, to banks
  // (p + 2Bm + j) % L (2B <= L: distinct, one address)
  wire [15:0]    yl_o = sec_col << (BB + 1);
  wire [LB-1:0]  yl_bank = LB'(sec_row) + LB'(yl_o);
  wire           yl_we = in_data && sec == 4'(SEC_YREF);
  // first channel of an output beat: Y 8B channels, y_ref' 2B
  wire [15:0]    oq_lo = (ok0 == K_Y) ? (op_m << (BB + 3)) : (op_m << (BB + 1));
  // halves: y_ref loads go to the inactive one, results to x_dst, act reads y_ref at x_src
  assign y_whalf = yl_we ? rsel_n : x_dst;
  assign y_rhalf = (st == ST_OUT || pw3) ? x_dst : x_src;
  always_comb begin : p_yport
    for (int k = 0; k < L; k++) begin
      logic we;
      logic [LB-1:0] j;
      j = LB'(k) - yl_bank;
      if (yl_we) begin
        we = 32'(j) < 32'(2 * B);
        y_waddr[k] = y_addr(32'(sec_row), 32'(yl_o >> LB));
        y_wdata[k] = st_bank[k*32 +: 32];
      end else begin
        we = v4 && m4[k] && (pw4 ? l4 : st4);
        y_waddr[k] = ya4[k];
        y_wdata[k] = pw4 ? nsum[k] : st_bank[k*32 +: 32];
      end
      y_we[k] = {we && y_whalf, we && !y_whalf};
      if (st == ST_OUT) y_raddr[k] = y_addr(32'(op_p), 32'(oq_lo >> LB));
      else if (pw3) y_raddr[k] = y_addr(32'(s3_tok[k]), 32'(o3 >> LB));
      else y_raddr[k] = sv3 ? y_addr(32'(sp3), 32'(sg3)) : YAW'(0);
    end
  end

  // list banks: the encoder's new union entries j land at positions u_cnt + e_upre[j]; at
  // most one per bank in a cycle (8 banks, at most 8 entries)
  logic [NW-1:0] e_pos [8];
  wire [NW-1:0] l_row0 = u_cnt >> 3;     // row of the cycle's first entry; the rest may
  wire [NW-1:0] l_row1 = l_row0 + NW'(1); // spill into the next row (other parity)
  always_comb begin : p_lport
    for (int j = 0; j < 8; j++) e_pos[j] = u_cnt + NW'(e_upre[j]);
    for (int m = 0; m < 2; m++) begin
      l_we[m] = 8'd0;
      l_waddr[m] = LAW2'((l_row0[0] == 1'(m) ? l_row0 : l_row1) >> 1);
    end
    l_wdata = '0;
    for (int b = 0; b < 8; b++) begin
      for (int j = 0; j < 8; j++) begin
        if (e_v && e_new[j] && e_pos[j][2:0] == 3'(b)) begin
          l_we[e_pos[j][3]][b] = 1'b1;
          l_wdata[LEP*b +: LEP] = LEP'(CI'({e_w[12:0], 3'(j)}));
        end
      end
    end
  end
  assign l_raddr = LAW2'(g_r >> 4);

  // delta buffer: the encoder writes token e_p's word to bank p % T; the act pass reads
  // word i/8 of tile k from every bank
  // (a beat's B tokens: banks (p0 % T) + r, B | T, one address)
  always_comb begin : p_dport
    for (int t = 0; t < T; t++) begin
      db_we[t] = e_v && ((32'(e_p) & TMASK) >> BB) == (t >> BB) && e_tv[t % B];
      db_wdata[t] = e_dword[t % B];
    end
  end
  assign db_waddr = DBAW'((32'(e_p) >> TB) * WI + 32'(e_w));
  assign db_raddr = DBAW'(32'(k1) * WI + 32'(s1_col >> 3));

  // dW list, DM entries per word (a beat's B entries share one word); each entry carries
  // first/last-of-row bits so the weight pass closes a row without look-ahead. An entry's
  // last bit is the next entry's first bit, so a beat is written one beat late (dp_*),
  // the last beat the cycle after the section (its last valid entry is closed by lr1).
  logic [15:0]      nz_row [B];
  logic             nz_new [B];
  logic             dw_bad;
  logic             dp_v, dw_flush;
  logic [31:0]      dp_idx;
  logic [DWE-2:0]   dp_e [B];                // row, col, value, first
  logic [DM*DWP-1:0] d_wword;
  wire              dw_in = in_data && sec == 4'(SEC_DW);
  always_comb begin : p_dw
    dw_bad = 1'b0;
    for (int r = 0; r < B; r++) begin
      logic [15:0] col;
      nz_row[r] = in_w[r][deltamtl_contract_pkg::NZ_ROW_LSB +: deltamtl_contract_pkg::NZ_ROW_WIDTH];
      col = in_w[r][deltamtl_contract_pkg::NZ_COL_LSB +: deltamtl_contract_pkg::NZ_COL_WIDTH];
      nz_new[r] = (r == 0) ? (sec_idx == 32'd0 || nz_row[0] != prev_row) : (nz_row[r] != nz_row[(r > 0) ? r - 1 : 0]);
      // padding entries past nnz_dw are ignored, never refused
      if ((sec_idx << BB) + 32'(r) < 32'(j_nnz) && (32'(nz_row[r]) >= 32'(j_o) || 32'(col) >= 32'(j_i)))
        dw_bad = 1'b1;
    end
    d_wword = '0;
    for (int m = 0; m < DM; m++) begin
      logic lastb;
      lastb = (m % B == B - 1) ? (dw_flush || nz_new[0]) : dp_e[(m % B == B - 1) ? 0 : m % B + 1][0];
      d_wword[DWP*m +: DWP] = DWP'({dp_e[m % B], lastb});
    end
    for (int m = 0; m < DM; m++)
      d_we[m] = dp_v && (dw_in || dw_flush) && (m >> BB) == ((32'(dp_idx) << BB) % DM) >> BB;
  end
  assign d_waddr = DAW2'((dp_idx << BB) >> DMB);
  assign d_raddr = DAW2'(g_dr >> DMB);
  // bias: beat n brings entries 2Bn .. 2Bn+2B-1 to as many consecutive banks (2B <= L)
  wire [31:0] bl_o = sec_idx << (BB + 1);
  always_comb begin : p_bport
    for (int k = 0; k < L; k++) begin
      b_we[k] = in_data && sec == 4'(SEC_BIAS) && (k >> (BB + 1)) == 32'(LB'(bl_o)) >> (BB + 1);
      b_wdata[k] = in_h[k % (2 * B)];
    end
  end
  assign b_waddr = GAW'(bl_o >> LB);
  assign b_raddr = GAW'(sg2);
  // requant: word k to bank k % 4B at k / 4B, so one address holds channels 8Bm..8Bm+8B-1
  // (a Y beat's); beat n writes banks (n % 4)B .. (n % 4)B+B-1
  for (genvar k = 0; k < NQ; k++) begin : g_qwe
    assign q_we[k] = in_data && sec == 4'(SEC_REQ) && sec_idx[1:0] == 2'(k >> BB);
    assign q_wdata[k] = {in_w[k % B][deltamtl_contract_pkg::REQ_ENTRY_BITS +: QE], in_w[k % B][0 +: QE]};
  end
  assign q_waddr = RAW'(sec_idx >> 2);
  assign q_raddr = RAW'(op_m);

  // -------------------------------------------------------------------------------------
  // Sequential control
  // -------------------------------------------------------------------------------------
  wire pipe_busy = v1 || v2 || v3 || v4 || pv1 || pv2;
  wire [FW_STATUS-1:0] final_status = j_idx_err ? CS_INDEX
                          : (j_nostate ? CS_NO_STATE : '0);

  always_ff @(posedge ap_clk) begin
    if (!ap_rst_n) begin
      st <= ST_HDR0;
      st_after_pipe <= ST_OUT;
      wsel <= 1'b0;
      rsel <= 1'b0;
      w_valid <= 1'b0;
      r_valid <= 1'b0;
      e_v <= 1'b0;
      v1 <= 1'b0; v2 <= 1'b0; v3 <= 1'b0; v4 <= 1'b0;
      pv1 <= 1'b0; pv2 <= 1'b0;
      ov1 <= 1'b0; ov2 <= 1'b0; ov3 <= 1'b0; ov4 <= 1'b0;
      fifo_cnt <= '0; fifo_rd <= '0; fifo_wr <= '0; inflight <= '0;
      pw_last_v <= 1'b0;
      j_status <= '0;
      j_tag <= '0;
      nnz_act <= '0;
      u_cnt <= '0;
      dp_v <= 1'b0;
      dw_flush <= 1'b0;
    end else begin
      y_rhalf_q <= y_rhalf;
      // ---------------- encoder stage ----------------
      e_v <= in_data && sec == 4'(SEC_X);
      for (int r = 0; r < B; r++) e_x[r] <= in_w[r];
      e_p <= in_r0;
      e_w <= sec_col;
      if (e_v) begin
        nnz_act <= nnz_act + NA'(e_cnt);
        u_cnt <= u_cnt + NW'(e_ucnt);
        // e_w is 0 at a tile's start: the mask restarts with this word's keep bits
        if (e_tstart) umask <= (8*WI)'(e_kor);
        else umask[8*e_w +: 8] <= e_seen | e_kor;
        if (e_tlast) tile_end[KAW'(32'(e_p) >> TB)] <= u_cnt + NW'(e_ucnt);
      end
      // dW list: hold a beat until the next one (or the section's end) gives its last bits
      dw_flush <= dw_in && sec_left == 40'd1;
      if (dw_in) begin
        dp_v <= 1'b1;
        dp_idx <= sec_idx;
        for (int r = 0; r < B; r++)
          dp_e[r] <= {CO'(nz_row[r]), CI'(in_w[r][deltamtl_contract_pkg::NZ_COL_LSB +: deltamtl_contract_pkg::NZ_COL_WIDTH]),
                      in_w[r][deltamtl_contract_pkg::NZ_VALUE_LSB +: deltamtl_contract_pkg::NZ_VALUE_WIDTH], nz_new[r]};
      end else if (dw_flush) dp_v <= 1'b0;

      // ---------------- input FSM ----------------
      case (st)
        ST_HDR0, ST_HDR1: if (in_acc && !hdr_beat) begin
          // B = 1: the header's first word; its second comes next beat
          h0 <= s_axis_TDATA[63:0];
          j_tag <= '0;
          if (s_axis_TLAST) begin
            j_status <= CS_LENGTH;
            st <= ST_DECIDE;
          end else st <= ST_HDR1;
        end else if (in_acc) begin
          logic [FW_STATUS-1:0] hs;
          logic [31:0] hp, hi, ho, hn;
          hs = header_status(hw0, hw1[deltamtl_contract_pkg::HDR_NNZ_DW_LSB +: FW_NNZ]);
          hp = 32'(hw0[deltamtl_contract_pkg::HDR_TOKENS_LSB +: FW_TOKENS]);
          hi = 32'(hw0[deltamtl_contract_pkg::HDR_IN_DIM_LSB +: FW_IN]);
          ho = 32'(hw0[deltamtl_contract_pkg::HDR_OUT_DIM_LSB +: FW_OUT]);
          hn = 32'(hw1[deltamtl_contract_pkg::HDR_NNZ_DW_LSB +: FW_NNZ]);
          j_tag <= hw1[deltamtl_contract_pkg::HDR_TAG_LSB +: FW_TAG];
          j_mode <= hw0[deltamtl_contract_pkg::HDR_MODE_LSB +: FW_MODE];
          j_flags <= hw0[deltamtl_contract_pkg::HDR_FLAGS_LSB +: NFLAGS];
          j_th <= hw0[deltamtl_contract_pkg::HDR_TH_LSB +: FW_TH];
          j_p <= 16'(hp);
          j_i <= 16'(hi);
          j_o <= 16'(ho);
          j_nnz <= FW_NNZ'(hn);
          j_wi <= 13'((hi + 32'd7) >> 3);
          j_go <= 16'((ho + 32'(L) - 32'd1) >> LB);
          j_tg <= 16'((hp + 32'(L) - 32'd1) >> LB);
          j_nt <= 16'((hp + 32'(T) - 32'd1) >> TB);
          j_pb <= 16'((hp + 32'(B) - 32'd1) >> BB);
          j_ob <= 16'((ho + 32'(B) - 32'd1) >> BB);
          j_hb2 <= 16'((ho + 32'(2 * B) - 32'd1) >> (BB + 1));
          j_hb8 <= 16'((ho + 32'(8 * B) - 32'd1) >> (BB + 3));
          j_nb <= FW_NNZ'((hn + 32'(B) - 32'd1) >> BB);
          j_idx_err <= 1'b0;
          nnz_act <= '0;
          u_cnt <= '0;
          if (s_axis_TLAST) begin
            j_status <= (hs != '0) ? hs : CS_LENGTH;
            st <= ST_DECIDE;
          end else if (hs != '0) begin
            j_status <= hs;
            st <= ST_DRAIN;
          end else begin
            j_status <= '0;
            st <= ST_SETUP;
          end
        end
        ST_SETUP: begin
          dp_v <= 1'b0;
          sec <= nsec;
          sec_left <= sz[nsec[2:0]];
          sec_rowlen <= nsec_rowlen;
          sec_row <= 16'd0; sec_col <= 16'd0; sec_idx <= 32'd0;
          w_use <= j_load_w ? ~wsel : wsel;
          x_src <= j_load_ref ? ~rsel : rsel;
          x_dst <= ~rsel;
          j_nostate <= (!j_load_w && (!w_valid || w_o != j_o || w_i != j_i))
                    || (!j_dense && !j_load_ref
                        && (!r_valid || r_p != j_p || r_i != j_i || r_o != j_o));
          st <= ST_IN;
        end
        ST_IN: if (in_acc) begin
          if (sec == 4'(SEC_DW)) begin
            if (dw_bad) j_idx_err <= 1'b1;
            prev_row <= nz_row[B-1];
          end
          if (s_axis_TLAST && !in_final) begin
            j_status <= CS_LENGTH;
            st <= ST_DECIDE;
          end else if (in_final && !s_axis_TLAST) begin
            j_status <= CS_LENGTH;
            st <= ST_DRAIN;
          end else if (in_final) begin
            st <= ST_DECIDE;
          end else if (sec_left == 40'd1) begin
            sec <= nsec;
            sec_left <= sz[nsec[2:0]];
            sec_rowlen <= nsec_rowlen;
            sec_row <= 16'd0; sec_col <= 16'd0; sec_idx <= 32'd0;
          end else begin
            sec_left <= sec_left - 40'd1;
            sec_idx <= sec_idx + 32'd1;
            if (sec_col == sec_rowlen - 16'd1) begin
              sec_col <= 16'd0;
              sec_row <= sec_row + 16'd1;
            end else sec_col <= sec_col + 16'd1;
          end
        end
        ST_DRAIN: if (in_acc && s_axis_TLAST) st <= ST_DECIDE;
        ST_DECIDE: begin
          // a header refusal or LENGTH is already in j_status; else INDEX > NO_STATE
          logic [FW_STATUS-1:0] fs;
          fs = (j_status != '0) ? j_status : final_status;
          j_status <= fs;
          g_g <= 16'd0; g_k <= 16'd0; g_c <= 16'd0; g_t <= 16'd0; g_r <= '0; g_dr <= 32'd0;
          g_ph <= G_PRO; g_prev <= 1'b0;
          ok0 <= K_Y; op_p <= 16'd0; op_m <= 16'd0;
          if (fs != '0) begin
            ok0 <= K_TRL;
            st <= ST_OUT;
          end else begin
            if (j_load_w) begin
              wsel <= ~wsel;
              w_valid <= 1'b1; w_o <= j_o; w_i <= j_i;
            end
            if (!j_task) begin
              rsel <= ~rsel;
              r_valid <= 1'b1; r_p <= j_p; r_i <= j_i; r_o <= j_o;
            end
            psub <= 1'b0;
            st <= (!j_task && j_nnz != 32'd0) ? ST_PATCH : ST_ACT;
          end
        end
        ST_PATCH, ST_UNPATCH: begin
          if (g_dr == j_nnz - 32'd1) begin
            g_dr <= 32'd0;
            st <= ST_WAITPIPE;
            st_after_pipe <= (st == ST_PATCH) ? ST_ACT : ST_OUT;
          end else g_dr <= g_dr + 32'd1;
        end
        ST_ACT: begin
          // slots: a T-cycle prologue (idle since the PE rows restart from zero; kept for the
          // one cycle model, docs/rtl.md); per (group, tile) max(|U_k|, T) cycles that MAC
          // its union while the previous tile is stored; an epilogue storing the last tile
          if (g_mc) g_r <= g_r + NW'(1);
          case (g_ph)
            G_PRO: if (32'(g_c) == 32'(T - 1)) begin
              g_c <= 16'd0;
              g_ph <= G_RUN;
            end else g_c <= g_c + 16'd1;
            G_RUN: if (32'(g_c) >= 32'(T - 1) && 32'(g_c) + 32'd1 >= 32'(u_len)) begin
              g_c <= 16'd0;
              g_prev <= 1'b1;
              g_pk <= g_k;
              g_pg <= g_g;
              if (g_hasnext) begin
                g_k <= g_nk;
                g_g <= g_ng;
                g_r <= g_klast ? NW'(0) : u_end;
              end else g_ph <= G_EPI;
            end else g_c <= g_c + 16'd1;
            default: if (32'(g_c) == 32'(T - 1)) begin
              st <= ST_WAITPIPE;
              st_after_pipe <= (j_task && j_nnz != 32'd0) ? ST_WPASS
                             : ((j_nnz != 32'd0) ? ST_UNPATCH : ST_OUT);
              psub <= 1'b1;
            end else g_c <= g_c + 16'd1;
          endcase
        end
        ST_WPASS: begin
          if (g_dr == j_nnz - 32'd1) begin
            g_dr <= 32'd0;
            g_t <= g_t + 16'd1;
            if (g_t == j_tg - 16'd1) begin
              st <= ST_WAITPIPE;
              st_after_pipe <= ST_OUT;
            end
          end else g_dr <= g_dr + 32'd1;
        end
        ST_WAITPIPE: if (!pipe_busy) st <= st_after_pipe;
        ST_OUT: if (o_issue) begin
          if (o_last_item) begin
            op_p <= 16'd0; op_m <= 16'd0;
            if (ok0 == K_Y) ok0 <= j_emit_ref ? K_XO : K_TRL;
            else if (ok0 == K_XO) ok0 <= K_YO;
            else if (ok0 == K_YO) ok0 <= K_TRL;
            else st <= ST_HDR0;
          end else begin
            logic [15:0] rl;
            rl = (ok0 == K_Y) ? j_hb8 : ((ok0 == K_XO) ? 16'(j_wi) : j_hb2);
            if (op_m == rl - 16'd1) begin
              op_m <= 16'd0;
              op_p <= op_p + 16'd1;
            end else op_m <= op_m + 16'd1;
          end
        end
        default: st <= ST_HDR0;
      endcase

      // ---------------- compute pipeline ----------------
      // s0 -> s1
      v1 <= (st == ST_ACT) || (st == ST_WPASS);
      pw1 <= (st == ST_WPASS);
      sw1 <= g_sw;
      mc1 <= g_mc;
      st1 <= g_st;
      lr1 <= (g_dr == j_nnz - 32'd1);
      sp1 <= 16'(g_sp);
      sv1 <= g_st && g_sp < 32'(j_p);
      sg1 <= g_pg;
      k1 <= g_k;
      g1 <= (st == ST_WPASS) ? g_t : g_g;
      ls1 <= g_r[2:0];
      lpar1 <= g_r[3];
      dpar1 <= DMB'(g_dr);
      // s1 -> s2
      v2 <= v1;
      pw2 <= pw1;
      sw2 <= sw1;
      mc2 <= mc1;
      st2 <= st1;
      f2 <= s1_dfirst;
      l2 <= s1_dlast || lr1;
      a2 <= 9'($signed(s1_dval));
      bs2 <= s1_col[2:0];
      o2 <= 16'(s1_drow);
      rot2 <= pw1 ? LB'(s1_drow) : LB'(0);
      sp2 <= sp1;
      sv2 <= sv1;
      sg2 <= sg1;
      g2 <= g1;
      // s2 -> s3
      v3 <= v2;
      pw3 <= pw2;
      sw3 <= sw2;
      st3 <= st2;
      f3 <= f2;
      l3 <= l2;
      sp3 <= sp2;
      sv3 <= sv2;
      sg3 <= sg2;
      g3 <= g2;
      o3 <= o2;
      for (int b = 0; b < L; b++) ops3[b] <= op_lane[b*8 +: 8];
      // non-MAC act cycles feed zero deltas, so pe adds its product unconditionally (a
      // gated product would cost an AND on every accumulator bit)
      for (int t = 0; t < T; t++)
        d3[t] <= pw2 ? ((t == 0) ? a2 : 9'd0) : (mc2 ? db_rdata[t][9*bs2 +: 9] : 9'd0);
      // s3 -> s4
      v4 <= v3;
      pw4 <= pw3;
      st4 <= st3;
      f4 <= f3;
      l4 <= l3;
      // y banks -> lanes: act reads a stored token's initial value (sp3), the output
      // phase its token (Y, y_ref')
      irot4 <= (st == ST_OUT) ? LB'(16'd0 - op_p) : LB'(16'd0 - sp3);
      srot4 <= LB'(sp3);
      srow4 <= 7'(32'(sp3) & TMASK);
      for (int b = 0; b < L; b++) begin
        bias4[b] <= b_rdata[b];
        if (pw3) begin
          ya4[b] <= y_addr(32'(s3_tok[b]), 32'(o3 >> LB));
          m4[b] <= s3_tok[b] < j_p;
        end else begin
          ya4[b] <= y_addr(32'(sp3), 32'(sg3));
          m4[b] <= sv3;
        end
      end
      // s4: the weight pass accumulates its lane sums; act accumulates the whole array. The
      // cycle before a switch (sw3: the switch item is one stage behind) hands pe plus its
      // last product to st and restarts pe from zero, so the switch item's product starts
      // the new tile; the stores (one row a cycle, the next T cycles) read st's rows.
      if (v4 && pw4) for (int b = 0; b < L; b++) sum[b] <= nsum[b];
      if (v4 && !pw4) begin
        for (int t = 0; t < T * L; t++) pe[t] <= sw3 ? 32'd0 : pe_sum[t];
        if (sw3)
          for (int t = 0; t < T * L; t++) st_sh[t] <= pe_sum[t];
      end

      // ---------------- patch pipeline ----------------
      pv1 <= (st == ST_PATCH) || (st == ST_UNPATCH);
      pv2 <= pv1;
      pcol2 <= s1_dcol[2:0];
      pval2 <= s1_dval;
      pa2 <= s1_pw_addr;
      pbank2 <= LB'(s1_drow);
      pw_last_v <= pv2;
      pa_last <= pa2;
      pbank_last <= pbank2;
      pw_last <= p_new;

      // ---------------- output pipeline ----------------
      ov1 <= o_issue;
      ok1 <= ok0;
      op1t <= op_p << BB;
      op1x <= LB'(op_p << BB);
      op1m <= op_m[14:0];
      od1 <= OW'(trailer_word(j_status, j_tag, (j_status != FW_STATUS'(0)) ? FW_NNZ'(0) : FW_NNZ'(nnz_act)));
      // o1: select (the beat's channels / tokens sit in distinct banks); Y and y_ref' take
      // the y row rotated onto the lanes (u_rot_yref), channel o from lane o % L
      ov2 <= ov1;
      ok2 <= ok1;
      for (int j = 0; j < NRQ; j++) begin
        logic [15:0] oo;
        oo = (16'(op1m) << (BB + 3)) + 16'(j);
        oacc2[j] <= yref_lane[32*LB'(oo) +: 32];
        omul2[j] <= q_rdata[j / 2][QE*(j%2) + deltamtl_contract_pkg::REQ_MULT_LSB +: deltamtl_contract_pkg::REQ_MULT_WIDTH];
        osh2[j] <= q_rdata[j / 2][QE*(j%2) + deltamtl_contract_pkg::REQ_SHIFT_LSB +: deltamtl_contract_pkg::REQ_SHIFT_WIDTH];
        omask2[j] <= oo < j_o;
      end
      case (ok1)
        K_XO: for (int r = 0; r < B; r++)
          od2[64*r +: 64] <= (32'(op1t) + 32'(r) < 32'(j_p)) ? x_rdata[op1x | LB'(r)] : 64'd0;
        K_YO: for (int j = 0; j < 2 * B; j++) begin
          logic [15:0] oo;
          oo = (16'(op1m) << (BB + 1)) + 16'(j);
          od2[32*j +: 32] <= (oo < j_o) ? yref_lane[32*LB'(oo) +: 32] : 32'd0;
        end
        default: od2 <= od1;
      endcase
      // o2 -> o3 -> o4: the requantisers' two register stages run beside these
      ov3 <= ov2;
      ok3 <= ok2;
      od3 <= od2;
      omask3 <= omask2;
      ov4 <= ov3;
      ok4 <= ok3;
      od4 <= od3;
      omask4 <= omask3;
      // push / pop
      if (ov4) begin
        fifo[fifo_wr] <= {ok4 == K_TRL, o_word};
        fifo_wr <= fifo_wr + 4'd1;
      end
      if (fifo_pop) fifo_rd <= fifo_rd + 4'd1;
      fifo_cnt <= fifo_cnt + 5'(ov4) - 5'(fifo_pop);
      inflight <= inflight + 5'(o_issue) - 5'(ov4);
    end
  end

  // stage 4: weight pass, a row segment starts from the act result; act store, a token's
  // initial value (DENSE: bias; TEMPORAL: y_ref; TASK: y_ref plus the bias delta)
  always_comb begin
    for (int t = 0; t < T * L; t++) pe_sum[t] = pe[t] + 32'(prod[t]);
    for (int b = 0; b < L; b++) begin
      nsum[b] = (f4 ? y_rdata[b] : sum[b]) + 32'(prod[b]);
      init_lane[b] = (j_dense ? 32'd0 : yref_lane[b*32 +: 32]) + (j_has_bias ? bias4[b] : 32'd0);
    end
  end
endmodule
`default_nettype wire
