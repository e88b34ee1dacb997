"""Kernels written by symprop's code generator. Do not edit: run `symprop generate`.

layers.py holds <layer>_forward / <layer>_backward for every registered layer whose kernels
its arrays can size (a recurrent layer's steps come from its spec, so it
is compiled inside networks only); net_<name>.py holds the fused network kernels of the
built-in networks (see codegen/network.py): three MLPs, and the networks of the sequence
worked examples, whose loss_and_grads_kernel is a whole step back through time
(net_rnn_three_steps.py, net_lstm_two_steps.py, net_gru_two_steps.py) or back through an
attention head's softmax (net_attention_four_tokens.py), each gradient line commented with
the partial derivative it computes.
"""
