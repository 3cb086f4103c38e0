# written by scripts/natsvc-plots.py; run as: gnuplot nat_time_cdf.gp (in this directory)
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 800,500 noenhanced
} else {
  set terminal png size 800,500 noenhanced
}
set output 'nat_time_cdf.png'
set grid
set title 'NAT mix, 10000 hosts: time from start to class known and to mode settled'
set xlabel 'seconds since the host started (log)'
set ylabel 'fraction of hosts'
set logscale x
set yrange [0:1]
set key bottom right
plot 'nat_time_cdf.dat' index 0 using 1:2 with steps lw 2 title 'class known', \
     '' index 1 using 1:2 with steps lw 2 title 'mode settled (all)', \
     '' index 2 using 1:2 with steps lw 2 title 'mode settled (upnp)'
