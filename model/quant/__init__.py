"""int8 quantisation: assembling the multi-task model, fake-quant sites and observers, the quantiser that produces a QuantizedModel, QAT, accuracy comparison, and the `deltamtl quant` command."""
