"""Numbers printed in the LIP paper, for side-by-side tables (not results of this package).

Source: Fig. 2 of Wu et al. (TMLR 2023), as transcribed in the project's shared reference
(paper_and_official_code.md, section 8.2). PSNR in dB; sparsities in percent of conv weights.
"""

FIG2 = {
    "inpaint_text": {"image": "kate (text mask)", "dense": 33.32,
                     "tickets": [(79.0, 34.52), (83.0, 34.42), (91.4, 33.83), (99.53, 29.67)]},
    "sr4": {"image": "zebra ×4", "dense": 25.59,
            "tickets": [(83.0, 25.75), (86.5, 25.73), (91.4, 25.63), (99.53, 23.72)]},
    "sr8": {"image": "pepper ×8", "dense": 28.73,
            "tickets": [(67.0, 28.86), (83.0, 28.95), (89.0, 28.81), (99.53, 27.36)]},
    "denoise": {"image": "baby σ=25", "dense": 31.07,
                "tickets": [(59.0, 31.17), (67.0, 31.24), (74.0, 31.13), (99.53, 29.02)]},
}
