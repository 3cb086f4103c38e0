# written by roost-sim; run as: gnuplot rounds_hist.gp (in this directory)
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 800,500 noenhanced
} else {
  set terminal png size 800,500 noenhanced
}
set output 'rounds_hist.png'
set grid
mode = ', CRYPTO OFF'
set title sprintf('rounds per lookup (13020 finished lookups%s)', mode)
set xlabel 'rounds (hops)'
set ylabel 'lookups'
set style fill solid 0.6
set boxwidth 0.8
set key off
set xrange [-0.5:7.5]
set yrange [0:*]
plot 'rounds_hist.dat' using 1:2 with boxes
set terminal svg size 800,500 noenhanced
set output 'rounds_hist.svg'
replot
unset output
