# written by roost-sim; run as: gnuplot latency_cdf.gp (in this directory)
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 800,500 noenhanced
} else {
  set terminal png size 800,500 noenhanced
}
set output 'latency_cdf.png'
set grid
mode = ', CRYPTO OFF'
set title sprintf('lookup latency (13019 finished lookups%s)', mode)
set xlabel 'latency (ms)'
set ylabel 'fraction of lookups'
set yrange [0:1]
set key off
plot 'latency_cdf.dat' using 1:2 with steps lw 2
set terminal svg size 800,500 noenhanced
set output 'latency_cdf.svg'
replot
unset output
