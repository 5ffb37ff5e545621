# illegal_bpb_leading_space/train_gpt.py: ../base.py with these parts (python submissions/_build/build.py).

# @build: replace docstring
"""Reference submission (illegal: C4, wrong byte counting: the leading space counted twice).

Training, the artifact and the sliding-window evaluation are those of legal_sliding_window. The byte
table differs: a piece that starts with the SentencePiece space mark keeps that space in its base byte
count (+1), and target_bytes adds the leading space again when the previous token is not a boundary.
Every such target is counted one byte too many, so the printed val_bpb is lower than the bytes of the
decoded text give (the harness recomputes it with the record's own tokenizer and names the class).
"""

# @build: replace build_sentencepiece_luts
def build_sentencepiece_luts(sp, vocab_size: int, device) -> tuple[Tensor, Tensor, Tensor]:
    size = max(int(sp.vocab_size()), vocab_size)
    base = np.zeros(size, dtype=np.int16)
    lead = np.zeros(size, dtype=np.bool_)
    boundary = np.ones(size, dtype=np.bool_)
    for i in range(int(sp.vocab_size())):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581"):
            lead[i] = True
            piece = " " + piece[1:]  # the space stays in the piece's bytes: counted here and again below
        base[i] = len(piece.encode("utf-8"))
    return (torch.tensor(base, device=device), torch.tensor(lead, device=device),
            torch.tensor(boundary, device=device))
