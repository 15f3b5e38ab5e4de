"""Step 12: a guarantee instead of an arms race. Randomized smoothing (Cohen, Rosenfeld and
Kolter 2019) on step 7's digits: a classifier that votes over Gaussian noise, and certifies,
for each digit, an L2 radius within which no attack can change its answer.

Three base CNNs are trained with Gaussian noise (one per sigma), the held-out digits are
certified (PREDICT and CERTIFY, with N0 selection and N estimation samples, confidence
1 - alpha), and the smoothed classifiers are then attacked with L2 PGD on the expectation
over the noise (Salman et al. 2019): the empirical robust accuracy, which the certified one
may never exceed.

--imagenet: EfficientNet-Lite0, never trained with noise, on the 20 labelled photos under
Gaussian noise: why smoothing needs base classifiers trained on noise."""

from adversarial.plumbing.script import run

from pathlib import Path

import torch

from adversarial import digits, smoothing
from adversarial.plumbing import cli
from adversarial.plumbing.errors import UserError
from adversarial.plumbing.files import check_outputs, write_all
from adversarial.plumbing.tables import plural


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sigmas",
        type=cli.list_of(cli.number_in(0, smoothing.MAX_SIGMA)),
        default="0.12,0.25,0.5",
        help=f"noise levels, pixels in [0, 1]: up to {smoothing.MAX_SIGMA:g} (default 0.12,...)",
    )
    parser.add_argument("--epochs", type=cli.int_in(1, 1000), default=15, help="default 15")
    cli.add_seed(parser, "the digits' split, the weights, the noise")
    parser.add_argument("--n0", type=cli.int_in(1, 10**6), default=100, help="selection samples")
    parser.add_argument("--n", type=cli.int_in(1, 10**7), default=1000, help="estimation samples")
    alpha = cli.number_in(0, 0.5)  # the confidence 1 - 2 alpha of a one-sided bound
    parser.add_argument("--alpha", type=alpha, default=0.001, help="failure probability, <= 0.5")
    parser.add_argument(
        "--radii",
        type=cli.list_of(cli.positive_float),
        default="0.25,0.5,0.75,1,1.25,1.5,2",
        help="L2 radii, beside 0 (default 0.25,0.5,...,2)",
    )
    parser.add_argument(
        "--digits-count",
        type=cli.int_in(1, 360),
        default=100,
        help="the first held-out digits to certify and attack (default 100 of 360)",
    )
    parser.add_argument("--pgd-steps", type=cli.int_in(1, 1000), default=10, help="default 10")
    parser.add_argument(
        "--noise-samples",
        type=cli.int_in(1, 1000),
        default=16,
        help="m: noise samples per PGD step (default 16)",
    )
    parser.add_argument(
        "--models", type=Path, nargs="+", help="weights saved by this step, one per sigma"
    )
    cli.add_output_dir(parser, what="the weights, the plot and the table")
    parser.add_argument(
        "--imagenet", action="store_true", help="EfficientNet-Lite0 on the labelled photos"
    )
    parser.add_argument(
        "--copies", type=cli.int_in(1, 10_000), default=10, help="--imagenet: per photo"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.imagenet:
        return on_imagenet(args)
    torch.set_num_threads(1)  # small batches; 2 cores may be shared
    x_train, y_train, x_test, y_test = digits.load_data(args.seed)
    x_test, y_test = x_test[: args.digits_count], y_test[: args.digits_count]
    names = {sigma: f"noise_{smoothing.sigma_name(sigma)}" for sigma in args.sigmas}
    files = [args.output_dir / "smoothing.png", args.output_dir / "smoothing.csv"]
    weights = [args.output_dir / f"digits_{name}.pth" for name in names.values()]
    if args.models and len(args.models) != len(args.sigmas):
        raise UserError(f"--models: give one file per sigma ({len(args.sigmas)})")
    check_outputs(files + ([] if args.models else weights), args.models or [])
    models, weight_writers = load_or_train(args, names, weights, x_train, y_train)
    print(
        f"Smoothing: N0 = {args.n0}, N = {args.n}, alpha = {args.alpha:g}, on the first "
        f"{len(x_test)} held-out digits; L2 PGD: {plural(args.pgd_steps, 'step')} of radius/4, "
        f"{args.noise_samples} noise samples each, judged on {args.n0} noisy copies"
    )
    radii = [0.0, *args.radii]
    certified, empirical = {}, {}
    for sigma, model in models.items():
        torch.manual_seed(args.seed)  # the noise: same seed, same table
        certified[sigma] = smoothing.certify_all(model, x_test, sigma, args.n0, args.n, args.alpha)
        empirical[sigma] = smoothing.empirical_accuracy(
            model, x_test, y_test, sigma, radii, args.noise_samples, args.pgd_steps, args.n0
        )
    tables = smoothing.report(certified, empirical, y_test, radii, args.n, args.alpha, files)
    write_all({**weight_writers, **tables})  # the weights with their certificates, or nothing
    print(f"Saved {files[0].name} and {files[1].name} in {args.output_dir}")


def load_or_train(args, names, weights, x_train, y_train):
    """({sigma: base classifier}, {path: writer}): read from --models (nothing to save),
    or trained with noise (their weights to save with the run's other files)."""
    from adversarial.plumbing.weights import state_dict_writer

    if args.models:
        models = [digits.load_trained(path) for path in args.models]
        return dict(zip(names, models, strict=True)), {}
    losses = {names[sigma]: digits.noisy_loss(x_train, y_train, sigma) for sigma in names}
    trained = digits.train_models(losses, x_train, args.epochs, args.seed)
    writers = {
        path: state_dict_writer(model, path.name)
        for path, model in zip(weights, trained.values(), strict=True)
    }
    return dict(zip(names, trained.values(), strict=True)), writers


def on_imagenet(args):
    """A network trained on clean photos only, under each sigma's noise: how often one noisy
    copy is still right, and how often the vote over --copies of them (g's estimate) is."""
    from adversarial.models import load_model, predict
    from adversarial.plumbing.progress import progress
    from adversarial.plumbing.samples import IMAGENET_PHOTOS, sample_photo, true_class
    from adversarial.plumbing.tables import print_table

    model = load_model("efficientnet_lite0")
    x = torch.cat([sample_photo(name) for name in IMAGENET_PHOTOS])
    labels = torch.tensor([true_class(name) for name in IMAGENET_PHOTOS])
    clean = (predict(model, x).argmax(1) == labels).float().mean().item()
    print(f"{model.name} on the {len(x)} labelled photos, {args.copies} noisy copies each")
    rows = [["0 (clean)", f"{clean:.0%}", f"{clean:.0%}"]]
    for sigma in args.sigmas:
        torch.manual_seed(args.seed)
        photos = progress(x, f"sigma {sigma:g}", unit="photo")
        counts = [smoothing.sample_noise(model, p, sigma, args.copies, 10) for p in photos]
        right = torch.stack([c[label] for c, label in zip(counts, labels, strict=True)])
        voted = torch.stack([c.argmax() for c in counts]) == labels
        share = (right.float() / args.copies).mean().item()
        voted_right = f"{voted.float().mean().item():.0%}"
        rows.append([smoothing.sigma_name(sigma), f"{share:.0%}", voted_right])
    print_table(["sigma", "one noisy copy right", "vote right (smoothed)"], rows)


if __name__ == "__main__":
    run(main)
