# written by scripts/punch-plots.py; run as: gnuplot punch_time_cdf.gp (in this directory)
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 800,500 noenhanced
} else {
  set terminal png size 800,500 noenhanced
}
set output 'punch_time_cdf.png'
set grid
set title 'time from nat_connect to a working path'
set xlabel 'ms'
set ylabel 'share of the paths made'
set logscale x
set key bottom right
plot 'punch_time_cdf.dat' index 0 with lines lw 2 title 'punched', \
     '' index 1 with lines lw 2 title 'relayed'
